//! A list's order as Cypher: `ORDER BY` over the flattened properties the
//! sort keys read, and the keyset conditions that start a page after a
//! cursor (and end it before one), in the order of
//! [`crate::twin::order`]: absent values last in either direction, ties
//! by id. Neo4j puts nulls last going up and first going down, so a
//! descending key sorts on `IS NULL` first.

use neo4rs::BoltType;
use serde_json::Value;

use super::filter::{column, plain};
use crate::twin::order::SortKey;

/// The columns of `order`'s keys; `None` when one of them is not a
/// flattened property (the list is then sorted by the store itself).
pub fn columns(order: &[SortKey]) -> Option<Vec<String>> {
    order.iter().map(|k| column(&k.path)).collect()
}

/// `ORDER BY` terms (without the keywords) in list order, or its reverse
/// when `backward`.
pub fn order_by(order: &[SortKey], columns: &[String], backward: bool) -> String {
    let mut terms = Vec::new();
    for (k, col) in order.iter().zip(columns) {
        let desc = k.desc != backward;
        // Absent last going forward, first going backward: Neo4j gets that
        // right by itself for ascending keys only.
        if k.desc {
            terms.push(format!(
                "{col} IS NULL{}",
                if backward { " DESC" } else { "" }
            ));
        }
        terms.push(format!("{col}{}", if desc { " DESC" } else { "" }));
    }
    terms.push(format!("n.id{}", if backward { " DESC" } else { "" }));
    terms.join(", ")
}

/// The condition that a twin stands after (`later`) or before the
/// position of `values` and `id` in list order; parameters added to
/// `params` under `prefix`.
pub fn beyond(
    order: &[SortKey],
    columns: &[String],
    values: &[Value],
    id: &str,
    later: bool,
    prefix: &str,
    params: &mut Vec<(String, BoltType)>,
) -> String {
    let mut param = |v: BoltType| {
        let name = format!("{prefix}{}", params.len());
        params.push((name.clone(), v));
        format!("${name}")
    };
    let mut alternatives = Vec::new();
    let mut equal: Vec<String> = Vec::new();
    for (i, (k, col)) in order.iter().zip(columns).enumerate() {
        let v = values.get(i).filter(|v| !v.is_null());
        let bolt = v.map(|v| plain(v).unwrap_or_else(|| BoltType::from(v.to_string())));
        let step = match (bolt, later) {
            // Nothing sorts after an absent value on this key.
            (None, true) => None,
            (None, false) => Some(format!("{col} IS NOT NULL")),
            (Some(b), true) => Some(format!(
                "({col} {} {} OR {col} IS NULL)",
                if k.desc { "<" } else { ">" },
                param(b)
            )),
            (Some(b), false) => Some(format!(
                "{col} {} {}",
                if k.desc { ">" } else { "<" },
                param(b)
            )),
        };
        if let Some(step) = step {
            alternatives.push(all_of(&equal, step));
        }
        equal.push(match v {
            None => format!("{col} IS NULL"),
            Some(v) => format!(
                "{col} = {}",
                param(plain(v).unwrap_or_else(|| BoltType::from(v.to_string())))
            ),
        });
    }
    let last = format!(
        "n.id {} {}",
        if later { ">" } else { "<" },
        param(BoltType::from(id))
    );
    alternatives.push(all_of(&equal, last));
    format!("({})", alternatives.join(" OR "))
}

fn all_of(equal: &[String], step: String) -> String {
    if equal.is_empty() {
        return step;
    }
    format!("({} AND {step})", equal.join(" AND "))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key(name: &str, desc: bool) -> SortKey {
        SortKey {
            path: vec!["reported".into(), name.into()],
            desc,
        }
    }

    #[test]
    fn absent_values_sort_last_both_ways() {
        let order = [key("power", true), key("runState", false)];
        let cols = columns(&order).expect("flattened");
        assert_eq!(
            order_by(&order, &cols, false),
            "n.`power` IS NULL, n.`power` DESC, n.`runState`, n.id"
        );
        assert_eq!(
            order_by(&order, &cols, true),
            "n.`power` IS NULL DESC, n.`power`, n.`runState` DESC, n.id DESC"
        );
        assert!(
            columns(&[SortKey {
                path: vec!["reported".into(), "motor".into(), "rpm".into()],
                desc: false
            }])
            .is_none()
        );
    }

    #[test]
    fn a_cursor_becomes_a_keyset_condition() {
        let order = [key("power", true)];
        let cols = columns(&order).expect("flattened");
        let mut params = Vec::new();
        let after = beyond(&order, &cols, &[json!(5)], "p1", true, "a", &mut params);
        assert_eq!(
            after,
            "((n.`power` < $a0 OR n.`power` IS NULL) OR (n.`power` = $a1 AND n.id > $a2))"
        );
        let mut params = Vec::new();
        let before = beyond(&order, &cols, &[json!(null)], "p1", false, "b", &mut params);
        assert_eq!(
            before,
            "(n.`power` IS NOT NULL OR (n.`power` IS NULL AND n.id < $b0))"
        );
        let mut params = Vec::new();
        let after = beyond(&order, &cols, &[json!(null)], "p1", true, "a", &mut params);
        assert_eq!(after, "((n.`power` IS NULL AND n.id > $a0))");
    }
}
