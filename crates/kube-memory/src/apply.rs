//! Server-side apply with one owner per field set: what a field manager applied before and
//! leaves out now is removed, what it applies now is merged in (objects key by key; lists and
//! scalars replaced whole). The API server tracks ownership per field across managers; here a
//! manager's previous apply stands for what it owns, which is exact when each object part has
//! one manager (as in a controller that applies what it renders).

use serde_json::Value;

/// The object after `manager` applies `applied` to `live`, having applied `previous` before.
pub(crate) fn apply(live: &Value, previous: Option<&Value>, applied: &Value) -> Value {
    let mut out = live.clone();
    if let Some(previous) = previous {
        remove_dropped(&mut out, previous, applied);
    }
    merge(&mut out, applied);
    out
}

/// The parts of an applied configuration that are the server's, not the manager's.
pub(crate) fn intent(applied: &Value) -> Value {
    let mut intent = applied.clone();
    if let Some(meta) = intent.get_mut("metadata").and_then(Value::as_object_mut) {
        for server_owned in ["managedFields", "resourceVersion", "uid", "creationTimestamp", "generation"] {
            meta.remove(server_owned);
        }
    }
    intent
}

fn remove_dropped(live: &mut Value, previous: &Value, applied: &Value) {
    let (Value::Object(live), Value::Object(previous)) = (live, previous) else { return };
    for (key, before) in previous {
        match applied.get(key) {
            None => {
                live.remove(key);
            }
            Some(now) if before.is_object() && now.is_object() => {
                if let Some(child) = live.get_mut(key) {
                    remove_dropped(child, before, now);
                }
            }
            Some(_) => {}
        }
    }
}

fn merge(target: &mut Value, applied: &Value) {
    match (target, applied) {
        (Value::Object(target), Value::Object(applied)) => {
            for (key, value) in applied {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, applied) => *target = applied.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_field_the_manager_stops_applying_goes() {
        let live = json!({"metadata": {"name": "a", "labels": {"x": "1", "other": "kept"}}, "spec": {"a": 1, "b": [1, 2], "c": {"d": 1}}});
        let previous =
            json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"a": 1, "b": [1, 2], "c": {"d": 1}}});
        let applied = json!({"metadata": {"name": "a", "labels": {"y": "2"}}, "spec": {"b": [3], "c": {"e": 2}}});
        let out = apply(&live, Some(&previous), &applied);
        assert_eq!(
            out,
            json!({"metadata": {"name": "a", "labels": {"other": "kept", "y": "2"}}, "spec": {"b": [3], "c": {"e": 2}}})
        );
        // The first apply only adds.
        assert_eq!(
            apply(&json!({"spec": {"z": 1}}), None, &json!({"spec": {"a": 1}})),
            json!({"spec": {"z": 1, "a": 1}})
        );
    }
}
