//! Kubernetes resource quantities (`250m`, `1.5`, `512Mi`, `2G`), as numbers.

/// CPU cores: `250m` -> 0.25, `2` -> 2.0.
pub fn cpu_cores(q: &str) -> Result<f64, String> {
    let q = q.trim();
    let value = match q.strip_suffix('m') {
        Some(milli) => number(milli, q)? / 1000.0,
        None => number(q, q)?,
    };
    Ok(value)
}

/// Bytes: binary (`Ki`, `Mi`, `Gi`, `Ti`) and decimal (`k`, `M`, `G`, `T`) suffixes.
pub fn bytes(q: &str) -> Result<f64, String> {
    let q = q.trim();
    const UNITS: [(&str, f64); 8] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (suffix, factor) in UNITS {
        if let Some(n) = q.strip_suffix(suffix) {
            return Ok(number(n, q)? * factor);
        }
    }
    number(q, q)
}

fn number(digits: &str, whole: &str) -> Result<f64, String> {
    let valid = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    match digits.parse::<f64>() {
        Ok(v) if valid && v.is_finite() => Ok(v),
        _ => Err(format!("{whole:?} is not a Kubernetes quantity (e.g. 250m, 2, 512Mi, 1Gi)")),
    }
}

/// Gibibytes, for prices per GB.
pub fn gib(q: &str) -> Result<f64, String> {
    Ok(bytes(q)? / (1024.0 * 1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse() {
        assert_eq!(cpu_cores("250m"), Ok(0.25));
        assert_eq!(cpu_cores("2"), Ok(2.0));
        assert_eq!(cpu_cores("1.5"), Ok(1.5));
        assert_eq!(bytes("512Mi"), Ok(512.0 * 1024.0 * 1024.0));
        assert_eq!(gib("1Gi"), Ok(1.0));
        assert_eq!(bytes("2G"), Ok(2e9));
        for bad in ["", "m", "1e3", "-1", "lots", "1Xi", "0x10"] {
            assert!(cpu_cores(bad).is_err(), "{bad}");
            assert!(bytes(bad).is_err(), "{bad}");
        }
    }
}
