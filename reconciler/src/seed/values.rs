//! Plausible values from a column's name and type, without any model: emails look like
//! emails, prices like prices, timestamps fall in one fixed year. Unique columns carry the row
//! number, so they never repeat.

use super::generate::{Datum, Rng};
use super::schema::{Column, Kind};

const FIRST: [&str; 12] =
    ["Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Radia", "Tim", "Frances", "Edsger"];
const LAST: [&str; 12] = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Perlman",
    "Berners-Lee",
    "Allen",
    "Dijkstra",
];
const CITIES: [&str; 8] = ["Lisbon", "Nairobi", "Osaka", "Toronto", "Lyon", "Recife", "Tartu", "Perth"];
const COUNTRIES: [&str; 8] = ["Portugal", "Kenya", "Japan", "Canada", "France", "Brazil", "Estonia", "Australia"];
const CODES: [&str; 8] = ["PT", "KE", "JP", "CA", "FR", "BR", "EE", "AU"];
const CURRENCIES: [&str; 4] = ["EUR", "USD", "JPY", "CAD"];
const WORDS: [&str; 12] =
    ["amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "harbor", "iris", "juniper", "kelp", "lumen"];

fn pick<'a>(rng: &mut Rng, from: &[&'a str]) -> &'a str {
    from[rng.below(from.len() as u64) as usize]
}

/// `text` cut to `max` characters, keeping `suffix` (what makes it unique) whole at its end.
fn fit(text: &str, suffix: &str, max: Option<u32>) -> String {
    let Some(max) = max.map(|m| m as usize) else { return format!("{text}{suffix}") };
    if suffix.chars().count() >= max {
        return suffix.chars().rev().take(max).collect::<Vec<_>>().into_iter().rev().collect();
    }
    let keep = max - suffix.chars().count();
    format!("{}{suffix}", text.chars().take(keep).collect::<String>())
}

fn base36(mut n: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[n % 36]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

fn text_for(rng: &mut Rng, name: &str, index: usize, unique: bool, max: Option<u32>) -> String {
    let n = name.to_ascii_lowercase();
    let (first, last) = (pick(rng, &FIRST), pick(rng, &LAST));
    let suffix = if unique { base36(index) } else { String::new() };
    let has = |w: &str| n.contains(w);
    if has("email") {
        let user = format!("{}.{}", first.to_ascii_lowercase(), last.to_ascii_lowercase().replace('-', ""));
        let domain = "@example.com";
        // The unique part goes before the domain.
        let local = fit(&user, &suffix, max.map(|m| m.saturating_sub(domain.len() as u32)));
        return fit(&format!("{local}{domain}"), "", max);
    }
    let text = if has("first") {
        first.to_owned()
    } else if has("last") || has("surname") {
        last.to_owned()
    } else if has("name") && !has("user") && !has("file") {
        format!("{first} {last}")
    } else if has("user") || has("login") || has("handle") {
        format!("{}{}", first.to_ascii_lowercase(), last.to_ascii_lowercase().chars().take(3).collect::<String>())
    } else if has("phone") {
        format!("+1 555 {:04}", rng.below(10_000))
    } else if has("city") {
        pick(rng, &CITIES).to_owned()
    } else if has("country_code") || n == "country" && max == Some(2) {
        pick(rng, &CODES).to_owned()
    } else if has("country") {
        pick(rng, &COUNTRIES).to_owned()
    } else if has("currency") {
        pick(rng, &CURRENCIES).to_owned()
    } else if has("url") || has("website") || has("link") {
        format!("https://{}.example.com/", pick(rng, &WORDS))
    } else if has("sku") || has("code") || has("slug") {
        format!("{}-{:03}", pick(rng, &WORDS).to_ascii_uppercase(), rng.below(1000))
    } else if has("description") || has("comment") || has("body") || has("note") {
        format!("The {} {} of the {}.", pick(rng, &WORDS), pick(rng, &WORDS), pick(rng, &WORDS))
    } else if has("title") || has("subject") {
        format!("{} {}", pick(rng, &WORDS), pick(rng, &WORDS))
    } else {
        pick(rng, &WORDS).to_owned()
    };
    let separator = if unique && !text.is_empty() { "-" } else { "" };
    fit(&text, &format!("{separator}{suffix}"), max)
}

/// A timestamp in 2025 (fixed, so data does not move with the clock), `date_only` as a date.
/// RFC 3339 in UTC: JSON Schema's `date-time`, and PostgreSQL reads it for both timestamp types.
fn moment(rng: &mut Rng, date_only: bool) -> String {
    let day = rng.below(365);
    let base = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default();
    let date = base + chrono::Duration::days(day as i64);
    if date_only {
        return date.format("%Y-%m-%d").to_string();
    }
    let seconds = rng.below(86_400);
    format!("{}T{:02}:{:02}:{:02}Z", date.format("%Y-%m-%d"), seconds / 3600, seconds % 3600 / 60, seconds % 60)
}

/// A value for `column` in row `index`.
pub(super) fn value(
    rng: &mut Rng,
    column: &Column,
    index: usize,
    unique: bool,
    (min, max): (Option<f64>, Option<f64>),
    one_of: Option<&[String]>,
) -> Datum {
    if let Some(values) = one_of.filter(|v| !v.is_empty()) {
        let at = if unique { index % values.len() } else { rng.below(values.len() as u64) as usize };
        return Datum::Text(values[at].clone());
    }
    let name = column.name.to_ascii_lowercase();
    match &column.kind {
        Kind::Int { bits } => {
            let limit = match bits {
                16 => i64::from(i16::MAX),
                32 => i64::from(i32::MAX),
                _ => i64::MAX / 2,
            };
            let low = min.map_or(if unique { 1 } else { 0 }, |m| m.ceil() as i64).max(-limit);
            let high = max.map_or(limit, |m| m.floor() as i64).min(limit);
            if unique {
                return Datum::Int(low.saturating_add(index as i64).min(high));
            }
            let (lo, hi) = if name.contains("quantity") || name.contains("qty") || name.contains("count") {
                (low.max(1), high.min(20))
            } else if name.contains("age") {
                (low.max(18), high.min(90))
            } else if name.contains("year") {
                (low.max(1990), high.min(2025))
            } else {
                (low, high.min(low.saturating_add(1000)))
            };
            let (lo, hi) = if lo > hi { (low, high) } else { (lo, hi) };
            let span = (hi - lo).max(0) as u64 + 1;
            Datum::Int(lo + rng.below(span) as i64)
        }
        Kind::Decimal { precision, scale } => {
            let whole_digits = precision.saturating_sub(*scale).min(15);
            let ceiling = 10f64.powi(whole_digits as i32) - 1.0;
            let low = min.unwrap_or(0.0).max(-ceiling);
            let high = max.unwrap_or(ceiling).min(ceiling).min(
                if name.contains("price") || name.contains("amount") || name.contains("total") || name.contains("cost")
                {
                    low.max(0.0) + 999.0
                } else {
                    ceiling
                },
            );
            let (low, high) = if low > high { (high, low) } else { (low, high) };
            let step = 10f64.powi(-(*scale as i32));
            let steps = ((high - low) / step).floor().max(0.0) as u64;
            let value = if unique {
                low + step * (index as f64).min(steps as f64)
            } else {
                low + step * rng.below(steps + 1) as f64
            };
            Datum::Decimal(format!("{:.*}", *scale as usize, value.clamp(low, high)))
        }
        Kind::Bool => Datum::Bool(if unique { index.is_multiple_of(2) } else { rng.below(2) == 0 }),
        Kind::Text { max: limit } => Datum::Text(text_for(rng, &name, index, unique, *limit)),
        Kind::Uuid => {
            // Random-looking, and the row number in the last digits keeps it unique.
            let high = rng.next_u64();
            Datum::Text(format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                high >> 32,
                (high >> 16) & 0xffff,
                high & 0xfff,
                (high >> 12) & 0xfff,
                index
            ))
        }
        Kind::Date => Datum::Text(moment(rng, true)),
        Kind::Timestamp => Datum::Text(moment(rng, false)),
        Kind::Json => Datum::Text(format!("{{\"generated\": true, \"row\": {index}}}")),
        Kind::Enum(labels) if !labels.is_empty() => {
            let at = if unique { index % labels.len() } else { rng.below(labels.len() as u64) as usize };
            Datum::Text(labels[at].clone())
        }
        Kind::Enum(_) | Kind::Other(_) => Datum::Null,
    }
}
