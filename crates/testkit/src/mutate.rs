//! Input mutation for the fuzz tests: byte-level edits (flips, interesting values, deletes,
//! inserts, duplicated and spliced ranges, truncation) and JSON-aware ones (a value replaced
//! by one of another type, a key dropped, an action renamed), seeded for reproduction.

use serde_json::Value;

/// xorshift64*: small, deterministic, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// In `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const INTERESTING: [&[u8]; 16] = [
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"-1",
    b"18446744073709551616",
    b"1e999",
    b"\xff\xfe",
    b"\xf0\x9f\x92\xa9",
];

const ACTIONS: [&str; 12] = [
    "opened",
    "reopened",
    "synchronize",
    "closed",
    "labeled",
    "unlabeled",
    "ready_for_review",
    "converted_to_draft",
    "edited",
    "assigned",
    "",
    "OPENED",
];

/// One mutated copy of `input`; `corpus` supplies material for splices.
pub fn mutate(input: &[u8], corpus: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let structural = if rng.chance(40) { json_mutation(input, rng) } else { None };
    // Half the structural edits go out as valid JSON, to reach past the JSON parser.
    if structural.is_some() && rng.chance(50) {
        return structural.unwrap_or_default();
    }
    let mut out = structural.unwrap_or_else(|| input.to_vec());
    let most = if rng.chance(70) { 2 } else { 8 };
    let rounds = 1 + rng.below(most);
    for _ in 0..rounds {
        byte_mutation(&mut out, corpus, rng);
    }
    out
}

fn byte_mutation(out: &mut Vec<u8>, corpus: &[Vec<u8>], rng: &mut Rng) {
    let at = rng.below(out.len() + 1);
    match rng.below(8) {
        0 if !out.is_empty() => {
            let i = rng.below(out.len());
            out[i] ^= 1 << rng.below(8);
        }
        1 if !out.is_empty() => {
            let i = rng.below(out.len());
            out[i] = rng.next_u64() as u8;
        }
        2 => {
            let token = INTERESTING[rng.below(INTERESTING.len())];
            out.splice(at..at, token.iter().copied());
        }
        3 if !out.is_empty() => {
            let len = 1 + rng.below(64.min(out.len()));
            let start = rng.below(out.len() - len + 1);
            out.drain(start..start + len);
        }
        4 if !out.is_empty() => {
            let len = 1 + rng.below(256.min(out.len()));
            let start = rng.below(out.len() - len + 1);
            let copy: Vec<u8> = out[start..start + len].to_vec();
            out.splice(at..at, copy);
        }
        5 if !corpus.is_empty() => {
            let other = &corpus[rng.below(corpus.len())];
            let from = rng.below(other.len() + 1);
            let len = rng.below(other.len() - from + 1).min(4096);
            out.splice(at..at, other[from..from + len].iter().copied());
        }
        6 => out.truncate(at),
        _ => {
            let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next_u64() as u8).collect();
            out.splice(at..at, bytes);
        }
    }
}

/// A structural edit of a JSON document (`None` when `input` is not JSON).
fn json_mutation(input: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(input).ok()?;
    for _ in 0..1 + rng.below(3) {
        let path = random_path(&value, rng);
        let choice = rng.below(9);
        let replacement = match choice {
            0 => Value::Null,
            1 => Value::from(rng.next_u64()),
            2 => Value::from(-(rng.below(1000) as i64)),
            3 => Value::from("x".repeat(rng.below(300))),
            4 => Value::Array(Vec::new()),
            5 => Value::Object(serde_json::Map::new()),
            6 => Value::from(ACTIONS[rng.below(ACTIONS.len())]),
            7 => Value::from(rng.chance(50)),
            _ => Value::Null,
        };
        let drop_at = rng.next_u64() as usize;
        let Some(node) = at_path(&mut value, &path) else { continue };
        match (choice, node) {
            (8, Value::Object(map)) if !map.is_empty() => {
                let key = map.keys().nth(drop_at % map.len()).cloned().unwrap_or_default();
                map.remove(&key);
            }
            (_, node) => *node = replacement,
        }
    }
    serde_json::to_vec(&value).ok()
}

/// A random path into `value`, biased towards shallow nodes (the fields the parsers read).
fn random_path(value: &Value, rng: &mut Rng) -> Vec<usize> {
    let mut path = Vec::new();
    let mut node = value;
    while path.len() < 6 && !rng.chance(25) {
        let len = match node {
            Value::Object(map) => map.len(),
            Value::Array(items) => items.len(),
            _ => 0,
        };
        if len == 0 {
            break;
        }
        let i = rng.below(len);
        let next = match node {
            Value::Object(map) => map.values().nth(i),
            Value::Array(items) => items.get(i),
            _ => None,
        };
        let Some(next) = next else { break };
        path.push(i);
        node = next;
    }
    path
}

fn at_path<'a>(value: &'a mut Value, path: &[usize]) -> Option<&'a mut Value> {
    let mut node = value;
    for &i in path {
        node = match node {
            Value::Object(map) => map.values_mut().nth(i)?,
            Value::Array(items) => items.get_mut(i)?,
            _ => return None,
        };
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_mutation() {
        let input = br#"{"action":"opened","pull_request":{"number":1}}"#.to_vec();
        let corpus = vec![input.clone()];
        let a = mutate(&input, &corpus, &mut Rng::new(42));
        let b = mutate(&input, &corpus, &mut Rng::new(42));
        assert_eq!(a, b);
        let changed = (0..100).filter(|s| mutate(&input, &corpus, &mut Rng::new(*s)) != input).count();
        assert!(changed > 90, "{changed}");
    }
}
