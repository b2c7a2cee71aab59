//! The demo plant: a generated ISA-95 site on the sample models (`dtdl/`),
//! used by `twingraph serve --demo` and by the benchmarks.
//!
//! `plant(cells)` yields batches that create an enterprise, sites, areas,
//! production lines and `cells` work cells of 49 assets each (30 machines,
//! 15 temperature sensors, 3 PLCs, a gateway) with typical state, plus
//! containment, process flow (`feeds`), utilities (`dependsOn`),
//! monitoring and control relationships: about 5 per twin.

use serde_json::json;

use crate::twin::{Batch, Op};

const EQUIPMENT: [&str; 5] = ["Pump", "Motor", "Conveyor", "Robot", "Compressor"];
/// Machines per work cell.
pub const PER_CELL_EQUIPMENT: usize = 30;
const PER_CELL_SENSORS: usize = 15;
const PER_CELL_PLCS: usize = 3;

fn m(name: &str) -> String {
    format!("dtmi:twingraph:isa95:{name};1")
}

fn create(id: String, model: &str) -> Op {
    Op::CreateTwin {
        id,
        model: m(model),
        desired: None,
        reported: None,
    }
}

fn rel(source: &str, name: &str, target: &str) -> Op {
    Op::CreateRelationship {
        source: source.to_owned(),
        id: Some(format!("{name}-{target}")),
        name: name.to_owned(),
        target: target.to_owned(),
        properties: None,
    }
}

/// Work cells of the demo plant unless told otherwise (1,960 machines and
/// sensors, with the hierarchy above them).
pub const DEFAULT_CELLS: usize = 40;

/// Id of machine `k` of work cell `cell`.
pub fn eq_id(cell: usize, k: usize) -> String {
    format!("c{cell}.e{k}")
}

/// The plant as batches, containers before what they contain.
pub fn plant(cells: usize) -> (Vec<Batch>, usize) {
    let mut ops: Vec<Op> = Vec::new();
    let sites = (cells / 200).max(1);
    ops.push(create("enterprise".into(), "Enterprise"));
    for s in 0..sites {
        let site = format!("site{s}");
        ops.push(create(site.clone(), "Site"));
        ops.push(rel("enterprise", "contains", &site));
    }
    let lines = cells.div_ceil(10);
    let areas = lines.div_ceil(4);
    for a in 0..areas {
        let area = format!("area{a}");
        ops.push(create(area.clone(), "Area"));
        ops.push(rel(&format!("site{}", a % sites), "contains", &area));
    }
    for l in 0..lines {
        let line = format!("line{l}");
        ops.push(create(line.clone(), "ProductionLine"));
        ops.push(rel(&format!("area{}", l / 4), "contains", &line));
    }
    for c in 0..cells {
        let cell = format!("cell{c}");
        ops.push(create(cell.clone(), "WorkCell"));
        ops.push(rel(&format!("line{}", c / 10), "contains", &cell));
        for k in 0..PER_CELL_EQUIPMENT {
            let id = eq_id(c, k);
            // Typical state: a few reported and desired properties, and the
            // model's own (a pump's flow and setpoint, a motor's speed).
            let model = EQUIPMENT[k % EQUIPMENT.len()];
            let load = ((c * 7 + k * 3) % 10) as f64;
            let mut desired =
                json!({"assetTag": format!("EAM-{c}-{k}"), "maintenanceInterval": "P90D"});
            let mut reported = json!({
                "manufacturer": "ACME",
                "runState": if (c + k) % 23 == 0 { "fault" } else { "running" },
                "power": 5.0 + load / 2.0,
            });
            match model {
                "Pump" => {
                    desired["flowSetpoint"] = json!(12.0);
                    reported["flowRate"] = json!(10.0 + load / 5.0);
                }
                "Motor" => {
                    desired["speedSetpoint"] = json!(1450.0);
                    reported["vibration"] = json!(0.5 + load / 20.0);
                }
                "Conveyor" => reported["beltSpeed"] = json!(1.5),
                _ => {}
            }
            ops.push(Op::CreateTwin {
                id: id.clone(),
                model: m(model),
                desired: Some(desired),
                reported: Some(reported),
            });
            ops.push(rel(&cell, "contains", &id));
        }
        for k in 0..PER_CELL_SENSORS {
            let id = format!("c{c}.s{k}");
            ops.push(Op::CreateTwin {
                id: id.clone(),
                model: m("TemperatureSensor"),
                desired: Some(json!({"samplingInterval": "PT10S", "firmwareVersion": "2.4.1"})),
                reported: Some(json!({"serialNumber": format!("SN{c}{k}"), "temperature": 21.5})),
            });
            ops.push(rel(&cell, "contains", &id));
            ops.push(rel(&id, "monitors", &eq_id(c, k * 2)));
        }
        for k in 0..PER_CELL_PLCS {
            let id = format!("c{c}.plc{k}");
            ops.push(create(id.clone(), "Plc"));
            ops.push(rel(&cell, "contains", &id));
            for j in 0..10 {
                ops.push(rel(&id, "controls", &eq_id(c, k * 10 + j)));
            }
        }
        let gw = format!("c{c}.gw");
        ops.push(create(gw.clone(), "Gateway"));
        ops.push(rel(&cell, "contains", &gw));
        for k in 0..PER_CELL_SENSORS {
            ops.push(rel(&gw, "connects", &format!("c{c}.s{k}")));
        }
    }
    // Process flow and utilities once every cell exists.
    for c in 0..cells {
        for k in 0..PER_CELL_EQUIPMENT {
            let id = eq_id(c, k);
            ops.push(rel(&id, "feeds", &eq_id(c, (k + 1) % PER_CELL_EQUIPMENT)));
            ops.push(rel(&id, "feeds", &eq_id(c, (k + 2) % PER_CELL_EQUIPMENT)));
            // Into the next cell, when there is another one (a lone cell
            // would feed itself: the links above again).
            if cells > 1 {
                ops.push(rel(&id, "feeds", &eq_id((c + 1) % cells, k)));
                ops.push(rel(
                    &id,
                    "feeds",
                    &eq_id((c + 1) % cells, (k + 1) % PER_CELL_EQUIPMENT),
                ));
            }
            // Compressors (k % 5 == 4) supply compressed air.
            let supplier = eq_id(c, (k / 5) * 5 + 4);
            ops.push(Op::CreateRelationship {
                source: id.clone(),
                id: Some(format!("dependsOn-{supplier}")),
                name: "dependsOn".to_owned(),
                target: supplier,
                properties: Some(json!({"kind": "compressedAir", "critical": k % 3 == 0})),
            });
        }
    }
    let twins = ops
        .iter()
        .filter(|o| matches!(o, Op::CreateTwin { .. }))
        .count();
    let batches = ops
        .chunks(2000)
        .map(|c| Batch { ops: c.to_vec() })
        .collect();
    (batches, twins)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::{GraphStore, Store, StoreConfig};

    /// Every plant size loads, the smallest ones included (a lone cell once
    /// linked its machines to themselves twice, and the store refused it).
    #[tokio::test]
    async fn plants_of_every_size_load() {
        let sources = crate::dtdl::load::read_paths(&[std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dtdl"
        ))])
        .expect("sample models");
        let models = crate::dtdl::check(&sources, &crate::dtdl::Options::default())
            .model
            .expect("valid sample models");
        for cells in [0, 1, 2, 3, 11] {
            let store = Store::in_memory(Arc::new(models.clone()), StoreConfig::default());
            let (batches, twins) = plant(cells);
            for b in batches {
                store
                    .apply(b, "demo")
                    .await
                    .unwrap_or_else(|e| panic!("{cells} cells: {e}"));
            }
            let all = store
                .twins(&crate::store::TwinQuery {
                    limit: 100_000,
                    ..crate::store::TwinQuery::default()
                })
                .await
                .expect("twins");
            assert_eq!(all.items.len(), twins, "{cells} cells");
            assert!(twins >= cells * 49, "{cells} cells: {twins} twins");
        }
    }
}
