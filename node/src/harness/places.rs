//! The places of a harness tree: which prefectures it takes, in order, and what its districts
//! are called (moved out of `hierarchy.rs`, which reached the 800-line limit).

/// Names of the first districts of Tokyo and Osaka (other districts are `d1`, `d2`, …).
pub(crate) fn district_name(prefecture_code: &str, index: usize) -> String {
    let known: &[&str] = match prefecture_code {
        "13" => &["chuo", "minato"],
        "27" => &["kita", "naniwa"],
        _ => &[],
    };
    known.get(index).map_or_else(|| format!("d{}", index + 1), |name| (*name).to_owned())
}

/// Prefecture codes used in order (Tokyo, Osaka, then the rest).
pub(crate) const PREFECTURE_CODES: [&str; 47] = [
    "13", "27", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "28", "29", "30", "31", "32", "33", "34",
    "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45", "46", "47",
];
