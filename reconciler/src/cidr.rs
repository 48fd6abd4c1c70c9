//! Egress CIDRs and the ranges cut out of them (pure). A NetworkPolicy `ipBlock.except` entry
//! must lie strictly inside its `cidr` (the API server refuses anything else), so each egress
//! CIDR gets exactly the exceptions it contains.

use ipnet::IpNet;

/// Parses a CIDR (`10.0.0.0/8`, `fd00::/8`); host bits are allowed, as Kubernetes allows them.
pub fn parse(cidr: &str) -> Result<IpNet, String> {
    cidr.trim().parse::<IpNet>().map_err(|_| format!("{cidr:?} is not a CIDR (e.g. 10.20.0.0/16 or fd00::/8)"))
}

/// The entries of `except` that lie strictly inside `cidr`, as written. Errors when `cidr`
/// itself lies inside (or equals) an exception: allowing it would allow nothing, and the
/// configuration is surely meant otherwise.
pub fn exceptions_within(cidr: &str, except: &[String]) -> Result<Vec<String>, String> {
    let net = parse(cidr)?.trunc();
    let mut inside = Vec::new();
    for raw in except {
        let excluded = parse(raw)?.trunc();
        if excluded.contains(&net) {
            return Err(format!("{cidr} lies inside the excluded range {raw} (network.egressExcept)"));
        }
        if net.contains(&excluded) {
            inside.push(raw.clone());
        }
    }
    Ok(inside)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<String> {
        ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"].map(String::from).to_vec()
    }

    #[test]
    fn each_cidr_gets_the_exceptions_it_contains() {
        assert_eq!(exceptions_within("0.0.0.0/0", &defaults()), Ok(vec!["169.254.0.0/16".to_owned()]));
        assert_eq!(
            exceptions_within("::/0", &defaults()),
            Ok(vec!["fe80::/10".to_owned(), "fd00:ec2::254/128".to_owned()])
        );
        assert_eq!(exceptions_within("fd00::/8", &defaults()), Ok(vec!["fd00:ec2::254/128".to_owned()]));
        assert_eq!(exceptions_within("10.20.0.0/16", &defaults()), Ok(vec![]));
        assert_eq!(exceptions_within("169.0.0.0/8", &defaults()), Ok(vec!["169.254.0.0/16".to_owned()]));
    }

    #[test]
    fn a_cidr_inside_an_exception_is_refused() {
        let e = exceptions_within("169.254.169.254/32", &defaults()).unwrap_err();
        assert!(e.contains("169.254.0.0/16"), "{e}");
        assert!(exceptions_within("169.254.0.0/16", &defaults()).is_err(), "equal is inside");
        assert!(exceptions_within("not-a-cidr", &defaults()).is_err());
        assert!(parse("10.0.0.0/33").is_err() && parse("10.0.0.0").is_err() && parse("10.0.0.1/8").is_ok());
    }
}
