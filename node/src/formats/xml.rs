//! A minimal XML writer: elements, text content and one namespace declaration, indented by
//! two spaces. Reading goes through `roxmltree`; the CAP 1.2 XSD validates what this writes
//! (`scripts/validate-formats.sh`).

/// Builds an XML document as text.
#[derive(Debug, Default)]
pub(super) struct XmlWriter {
    out: String,
    open: Vec<&'static str>,
}

/// Escapes text content (and attribute values: `"` is escaped too).
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            // Carriage returns would be normalised away by any XML parser; keep them.
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

impl XmlWriter {
    /// A document with the XML declaration.
    pub(super) fn new() -> Self {
        Self { out: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n".to_owned(), open: Vec::new() }
    }

    fn indent(&mut self) {
        for _ in 0..self.open.len() {
            self.out.push_str("  ");
        }
    }

    /// Opens `<name>` (with `xmlns` when given).
    pub(super) fn open(&mut self, name: &'static str, xmlns: Option<&str>) {
        self.indent();
        match xmlns {
            Some(ns) => self.out.push_str(&format!("<{name} xmlns=\"{}\">\n", escape(ns))),
            None => self.out.push_str(&format!("<{name}>\n")),
        }
        self.open.push(name);
    }

    /// Closes the innermost open element.
    pub(super) fn close(&mut self) {
        if let Some(name) = self.open.pop() {
            self.indent();
            self.out.push_str(&format!("</{name}>\n"));
        }
    }

    /// `<name>text</name>`.
    pub(super) fn leaf(&mut self, name: &str, text: &str) {
        self.indent();
        self.out.push_str(&format!("<{name}>{}</{name}>\n", escape(text)));
    }

    /// `<parameter>`-style pair: `<outer><valueName>name</valueName><value>value</value></outer>`.
    pub(super) fn pair(&mut self, outer: &'static str, name: &str, value: &str) {
        self.open(outer, None);
        self.leaf("valueName", name);
        self.leaf("value", value);
        self.close();
    }

    /// The document, every element closed.
    pub(super) fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reparses() {
        let mut xml = XmlWriter::new();
        xml.open("alert", Some("urn:example"));
        xml.leaf("note", "a < b & \"c\" > d\r\n日本語");
        xml.pair("parameter", "k", "v");
        let text = xml.finish();
        let doc = roxmltree::Document::parse(&text).expect("well-formed");
        let note = doc.root_element().children().find(|n| n.has_tag_name("note")).expect("note");
        assert_eq!(note.text(), Some("a < b & \"c\" > d\r\n日本語"));
        assert_eq!(doc.root_element().tag_name().namespace(), Some("urn:example"));
    }
}
