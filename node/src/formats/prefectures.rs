//! Names of the regions a scope designates: Japan, its 47 prefectures (JIS X 0401 codes,
//! `prefectures.tsv`, copied from the project's reference data), and districts below them.

use kairan_protocol::Scope;

const TABLE: &str = include_str!("prefectures.tsv");

/// A prefecture: JIS X 0401 code, Japanese and English names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefecture {
    pub code: &'static str,
    pub name_ja: &'static str,
    pub name_en: &'static str,
}

/// The prefecture with JIS X 0401 `code` (`"13"`).
pub(crate) fn prefecture(code: &str) -> Option<Prefecture> {
    TABLE.lines().skip(1).find_map(|line| {
        let mut fields = line.split('\t');
        match (fields.next(), fields.next(), fields.next()) {
            (Some(c), Some(name_ja), Some(name_en)) if c == code => {
                Some(Prefecture { code: c, name_ja, name_en: name_en.trim_end() })
            }
            _ => None,
        }
    })
}

/// Whether `lang` is Japanese (`ja`, `ja-JP`).
pub(crate) fn is_japanese(lang: &str) -> bool {
    lang == "ja" || lang.starts_with("ja-")
}

/// What a scope designates, for people, in `lang` (Japanese or else English):
/// `jp` → 日本全国 / all of Japan, `jp/13` → 東京都 / Tokyo, `jp/13/chuo` → 東京都 chuo.
pub(crate) fn area_name(scope: &Scope, lang: &str) -> String {
    let ja = is_japanese(lang);
    let segments = scope.segments();
    let country = if ja { "日本全国" } else { "all of Japan" };
    let Some(code) = segments.get(1) else {
        return if segments.first().is_some_and(|c| c == "jp") {
            country.to_owned()
        } else {
            scope.to_string()
        };
    };
    let prefecture_name = match prefecture(code) {
        Some(p) if ja => p.name_ja.to_owned(),
        Some(p) => p.name_en.to_owned(),
        None => code.clone(),
    };
    std::iter::once(prefecture_name).chain(segments[2..].iter().cloned()).collect::<Vec<_>>().join(" ")
}

/// The JIS X 0401 prefecture code of a scope below `jp`, if it names a known prefecture.
pub(crate) fn prefecture_code(scope: &Scope) -> Option<&'static str> {
    match scope.segments() {
        [country, code, ..] if country == "jp" => prefecture(code).map(|p| p.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(text: &str) -> Scope {
        Scope::parse(text).expect("scope")
    }

    #[test]
    fn all_47_prefectures() {
        let codes: Vec<String> = (1..=47).map(|n| format!("{n:02}")).collect();
        for code in &codes {
            let p = prefecture(code).unwrap_or_else(|| panic!("prefecture {code}"));
            assert!(!p.name_ja.is_empty() && !p.name_en.is_empty());
        }
        assert_eq!(prefecture("48"), None);
        assert_eq!(prefecture("13").map(|p| (p.name_ja, p.name_en)), Some(("東京都", "Tokyo")));
        assert_eq!(prefecture("47").map(|p| p.name_en), Some("Okinawa"));
    }

    #[test]
    fn area_names() {
        assert_eq!(area_name(&scope("jp"), "ja"), "日本全国");
        assert_eq!(area_name(&scope("jp"), "en"), "all of Japan");
        assert_eq!(area_name(&scope("jp/13"), "ja-JP"), "東京都");
        assert_eq!(area_name(&scope("jp/13"), "en"), "Tokyo");
        assert_eq!(area_name(&scope("jp/13/chuo"), "ja"), "東京都 chuo");
        assert_eq!(area_name(&scope("jp/99"), "en"), "99");
    }

    #[test]
    fn codes() {
        assert_eq!(prefecture_code(&scope("jp/01/sapporo")), Some("01"));
        assert_eq!(prefecture_code(&scope("jp")), None);
        assert_eq!(prefecture_code(&scope("jp/99")), None);
    }
}
