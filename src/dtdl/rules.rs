//! Rules that span elements: identifier uniqueness, reference resolution,
//! inheritance, name uniqueness (inherited contents included), schema nesting,
//! Component and Enum rules, semantic units and extension constraints.
//!
//! Runs after every document of a model set has been parsed. Produces the
//! identifier index, the resolved references and the list of DTMIs that are
//! referenced but defined nowhere (the model is then *incomplete*).

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::diag::{Diagnostic, code};
use super::dtmi::Version;
use super::metamodel::{self, Class, Kind, Range, limits};
use super::parse::{ElemId, Element, Item, Parsed};
use super::vocab::{Adjunct, Primitive, StdSchema, vocab};

/// What whole-model checking found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Identifier → element.
    pub index: HashMap<String, ElemId>,
    /// DTMIs referenced but not defined, with the elements that reference them.
    pub unresolved: Vec<(String, ElemId)>,
    /// For each Interface: its ancestors (transitively), nearest first.
    pub ancestors: HashMap<ElemId, Vec<ElemId>>,
}

/// A schema or class reference after resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Elem(ElemId),
    Primitive(Primitive),
    Std(StdSchema),
    /// A standard quantitativeTypes Enum (string-valued), by name.
    StdEnum(&'static str),
    Missing,
}

struct Checker<'a> {
    p: &'a Parsed,
    diags: Vec<Diagnostic>,
    out: Checked,
}

pub fn check(parsed: &mut Parsed) -> Checked {
    let mut c = Checker {
        p: parsed,
        diags: Vec::new(),
        out: Checked::default(),
    };
    c.index();
    c.references();
    c.inheritance();
    c.names();
    c.schemas();
    c.components();
    c.enums();
    c.cotypes();
    c.extensions();
    let Checker { diags, out, .. } = c;
    parsed.diags.extend(diags);
    out
}

impl<'a> Checker<'a> {
    fn err(&mut self, code: &'static str, e: ElemId, path: Option<&str>, message: String) {
        let el = &self.p.elements[e];
        self.diags.push(Diagnostic {
            code,
            file: self.p.docs[el.doc].clone(),
            path: path.unwrap_or(&el.path).to_owned(),
            dtmi: Some(el.id.clone()),
            message,
        });
    }

    fn el(&self, e: ElemId) -> &'a Element {
        &self.p.elements[e]
    }

    fn index(&mut self) {
        for (i, el) in self.p.elements.iter().enumerate() {
            if el.id.is_empty() {
                continue;
            }
            match self.out.index.get(&el.id) {
                Some(&prev) => {
                    if el.explicit_id {
                        let prev_path = format!(
                            "{}: {}",
                            self.p.docs[self.p.elements[prev].doc], self.p.elements[prev].path
                        );
                        self.err(
                            code::ID_DUPLICATE,
                            i,
                            None,
                            format!(
                                "@id {} is already used by the element at {prev_path}",
                                el.id
                            ),
                        );
                    }
                }
                None => {
                    self.out.index.insert(el.id.clone(), i);
                }
            }
        }
    }

    /// Looks up a referenced DTMI.
    fn target(&self, dtmi: &str) -> Option<ElemId> {
        self.out.index.get(dtmi).copied()
    }

    /// The Interface an element is defined in (itself, for an Interface).
    fn owner_interface(&self, mut e: ElemId) -> ElemId {
        loop {
            let el = self.el(e);
            if el.class == Class::Interface {
                return e;
            }
            match el.parent {
                Some(p) => e = p,
                None => return e,
            }
        }
    }

    fn references(&mut self) {
        let mut missing: HashSet<(String, ElemId)> = HashSet::new();
        for e in 0..self.p.elements.len() {
            let el = self.el(e);
            let mut errs = Vec::new();
            for pv in &el.props {
                let Kind::Elements(range) = pv.def.kind else {
                    continue;
                };
                for item in &pv.items {
                    let Item::Ref(dtmi) = item else { continue };
                    match self.target(dtmi) {
                        None => {
                            missing.insert((dtmi.clone(), e));
                        }
                        Some(t) => {
                            let tel = self.el(t);
                            let classes = metamodel::range_classes(range, el.version);
                            let version_ok = match (el.version, tel.version) {
                                (Version::V2, Version::V3) => false,
                                (Version::V3, Version::V2) => {
                                    super::parse::accepts_v2_elements(pv.def.term)
                                }
                                _ => true,
                            };
                            if !version_ok {
                                errs.push((
                                    code::REFERENCE_VERSION,
                                    format!("{}.{}", el.path, pv.key),
                                    format!(
                                        "\"{}\" of a DTDL v{} element cannot refer to {dtmi}, which is DTDL v{}",
                                        pv.def.term,
                                        el.version.number(),
                                        tel.version.number()
                                    ),
                                ));
                            } else if !classes.contains(&tel.class) {
                                errs.push((
                                    code::REFERENCE_WRONG_CLASS,
                                    format!("{}.{}", el.path, pv.key),
                                    format!(
                                        "\"{}\" refers to {dtmi}, a {}; expected {}",
                                        pv.def.term,
                                        tel.class.term(),
                                        classes
                                            .iter()
                                            .map(|c| c.term())
                                            .collect::<Vec<_>>()
                                            .join(" or ")
                                    ),
                                ));
                            } else if tel.class != Class::Interface {
                                let shareable = self.owner_interface(t) == self.owner_interface(e);
                                if !shareable {
                                    errs.push((
                                        code::REFERENCE_NOT_SHAREABLE,
                                        format!("{}.{}", el.path, pv.key),
                                        format!(
                                            "{dtmi} is defined inside another element; only Interfaces and elements of the same Interface can be referenced"
                                        ),
                                    ));
                                }
                            }
                        }
                    }
                }
            }
            for (code, path, msg) in errs {
                self.err(code, e, Some(&path), msg);
            }
        }
        let mut missing: Vec<(String, ElemId)> = missing.into_iter().collect();
        missing.sort();
        self.out.unresolved = missing;
    }

    /// Resolved values of an element-valued property.
    fn targets(&self, e: ElemId, term: &str) -> Vec<Target> {
        let Some(pv) = self.el(e).prop(term) else {
            return Vec::new();
        };
        pv.items
            .iter()
            .map(|i| match i {
                Item::Elem(x) => Target::Elem(*x),
                Item::Ref(d) => self.target(d).map_or(Target::Missing, Target::Elem),
                Item::Primitive(p) => Target::Primitive(*p),
                Item::StdSchema(s) => Target::Std(*s),
                Item::QuantEnum(name) => Target::StdEnum(name),
                _ => Target::Missing,
            })
            .collect()
    }

    fn elem_targets(&self, e: ElemId, term: &str) -> Vec<ElemId> {
        self.targets(e, term)
            .into_iter()
            .filter_map(|t| match t {
                Target::Elem(x) => Some(x),
                _ => None,
            })
            .collect()
    }

    /// `extends`: no cycles, at most 10 links deep, (v3) at most 1024
    /// interfaces in a hierarchy; records each Interface's ancestors.
    fn inheritance(&mut self) {
        let n = self.p.elements.len();
        let parents: Vec<Vec<ElemId>> = (0..n)
            .map(|e| {
                if self.el(e).class == Class::Interface {
                    self.elem_targets(e, "extends")
                } else {
                    Vec::new()
                }
            })
            .collect();
        // Iterative depth-first search (no recursion: hierarchies come from input).
        let mut state = vec![0u8; n]; // 0 new, 1 on the stack, 2 done
        let mut depth = vec![0usize; n];
        let mut cyclic = vec![false; n];
        for root in 0..n {
            if state[root] != 0 || self.el(root).class != Class::Interface {
                continue;
            }
            state[root] = 1;
            let mut stack: Vec<(ElemId, usize)> = vec![(root, 0)];
            while let Some((node, next)) = stack.last_mut() {
                let node = *node;
                if let Some(&p) = parents[node].get(*next) {
                    *next += 1;
                    match state[p] {
                        0 => {
                            state[p] = 1;
                            stack.push((p, 0));
                        }
                        1 => cyclic[node] = true,
                        _ => {}
                    }
                } else {
                    stack.pop();
                    state[node] = 2;
                    for &p in &parents[node] {
                        depth[node] = depth[node].max(depth[p] + 1);
                        cyclic[node] |= cyclic[p];
                    }
                }
            }
        }
        for i in 0..n {
            if self.el(i).class != Class::Interface {
                continue;
            }
            if cyclic[i] {
                self.err(
                    code::EXTENDS_CYCLE,
                    i,
                    None,
                    format!(
                        "Interface {} extends itself, directly or through its ancestors",
                        self.el(i).id
                    ),
                );
                continue;
            }
            if depth[i] > limits::EXTENDS_DEPTH {
                self.err(
                    code::EXTENDS_TOO_DEEP,
                    i,
                    None,
                    format!(
                        "the extends hierarchy of {} is {} levels deep; the limit is {}",
                        self.el(i).id,
                        depth[i],
                        limits::EXTENDS_DEPTH
                    ),
                );
            }
            // Ancestors, breadth-first (nearest first), each once.
            let mut seen = HashSet::new();
            let mut order = Vec::new();
            let mut queue: VecDeque<ElemId> = parents[i].iter().copied().collect();
            while let Some(a) = queue.pop_front() {
                if a == i || !seen.insert(a) {
                    continue;
                }
                order.push(a);
                queue.extend(parents[a].iter().copied());
            }
            if self.el(i).version == Version::V3 && order.len() > limits::EXTENDS_TOTAL_V3 {
                self.err(
                    code::EXTENDS_TOO_MANY,
                    i,
                    None,
                    format!(
                        "{} has {} interfaces in its extends hierarchy; the limit is {}",
                        self.el(i).id,
                        order.len(),
                        limits::EXTENDS_TOTAL_V3
                    ),
                );
            }
            self.out.ancestors.insert(i, order);
        }
    }

    fn names(&mut self) {
        for e in 0..self.p.elements.len() {
            let el = self.el(e);
            match el.class {
                Class::Interface => {
                    // Own and inherited contents.
                    let mut all: Vec<ElemId> = self.elem_targets(e, "contents");
                    let own = all.len();
                    if let Some(anc) = self.out.ancestors.get(&e) {
                        for &a in anc {
                            all.extend(self.elem_targets(a, "contents"));
                        }
                    }
                    let mut seen: HashMap<&str, ElemId> = HashMap::new();
                    let mut errs = Vec::new();
                    for (n, &c) in all.iter().enumerate() {
                        let Some(name) = self.el(c).name() else {
                            continue;
                        };
                        match seen.get(name) {
                            Some(&prev) if prev != c => {
                                let inherited = n >= own;
                                errs.push((
                                    c,
                                    format!(
                                        "name \"{name}\" is used twice among the contents of {}{}",
                                        self.el(e).id,
                                        if inherited {
                                            " (inherited contents included)"
                                        } else {
                                            ""
                                        }
                                    ),
                                ));
                            }
                            _ => {
                                seen.insert(name, c);
                            }
                        }
                    }
                    if el.version == Version::V3 && all.len() > limits::CONTENTS_TOTAL_V3 {
                        errs.push((
                            e,
                            format!(
                                "{} has more than {} contents",
                                el.id,
                                limits::CONTENTS_TOTAL_V3
                            ),
                        ));
                    }
                    let mut reported = HashSet::new();
                    for (c, msg) in errs {
                        if reported.insert(msg.clone()) {
                            self.err(code::NAME_DUPLICATE, c, None, msg);
                        }
                    }
                }
                Class::Relationship | Class::Object | Class::Enum => {
                    let term = match el.class {
                        Class::Relationship => "properties",
                        Class::Object => "fields",
                        _ => "enumValues",
                    };
                    let kids = self.elem_targets(e, term);
                    let mut seen: HashSet<&str> = HashSet::new();
                    let mut errs = Vec::new();
                    for &k in &kids {
                        if let Some(name) = self.el(k).name()
                            && !seen.insert(name)
                        {
                            errs.push((k, format!("name \"{name}\" is used twice in \"{term}\"")));
                        }
                    }
                    for (k, msg) in errs {
                        self.err(code::NAME_DUPLICATE, k, None, msg);
                    }
                }
                _ => {}
            }
        }
    }

    /// Complex-schema nesting: no cycles, depth ≤ 5; v2 Property schemas
    /// hold no Array and no geospatial schema.
    fn schemas(&mut self) {
        for e in 0..self.p.elements.len() {
            let el = self.el(e);
            let is_root_holder = matches!(
                el.class,
                Class::Telemetry
                    | Class::Property
                    | Class::CommandPayload
                    | Class::CommandRequest
                    | Class::CommandResponse
            ) || (el.class.is_complex_schema()
                && el.parent_prop == Some("schemas"));
            if !is_root_holder {
                continue;
            }
            let roots: Vec<Target> = if el.class.is_complex_schema() {
                vec![Target::Elem(e)]
            } else {
                self.targets(e, "schema")
            };
            for r in roots {
                let Target::Elem(s) = r else {
                    if let Target::Std(g) = r
                        && el.class == Class::Property
                        && el.version == Version::V2
                        && g.is_geospatial()
                    {
                        self.err(
                            code::SCHEMA_NOT_ALLOWED,
                            e,
                            None,
                            format!(
                                "a DTDL v2 Property may not have the geospatial schema {}",
                                g.term()
                            ),
                        );
                    }
                    continue;
                };
                let mut stack = Vec::new();
                let mut found = SchemaWalk::default();
                self.walk_schema(s, &mut stack, &mut found);
                if found.cycle {
                    self.err(
                        code::SCHEMA_CYCLE,
                        e,
                        None,
                        format!("schema {} refers to itself", self.el(s).id),
                    );
                } else if found.depth > limits::SCHEMA_DEPTH {
                    self.err(
                        code::SCHEMA_TOO_DEEP,
                        e,
                        None,
                        format!(
                            "schemas are nested {} levels deep below a complex schema; the limit is {}",
                            found.depth,
                            limits::SCHEMA_DEPTH
                        ),
                    );
                }
                if el.class == Class::Property && el.version == Version::V2 {
                    if found.array {
                        self.err(
                            code::SCHEMA_NOT_ALLOWED,
                            e,
                            None,
                            "a DTDL v2 Property schema may not contain an Array".to_owned(),
                        );
                    } else if found.geospatial {
                        self.err(
                            code::SCHEMA_NOT_ALLOWED,
                            e,
                            None,
                            "a DTDL v2 Property schema may not contain a geospatial schema"
                                .to_owned(),
                        );
                    }
                }
            }
        }
    }

    /// Walks the schema hierarchy below complex schema `s`. `found.depth`
    /// becomes the most `schema`/`elementSchema` links on any chain below
    /// it (DTDL's limit is 5; the link to a primitive counts).
    fn walk_schema(&self, s: ElemId, stack: &mut Vec<ElemId>, found: &mut SchemaWalk) -> usize {
        if stack.contains(&s) {
            found.cycle = true;
            return 0;
        }
        if found.cycle || stack.len() > limits::SCHEMA_DEPTH + 2 {
            return 0;
        }
        let el = self.el(s);
        if el.class == Class::Array {
            found.array = true;
        }
        stack.push(s);
        // Each child is reached through one counted link.
        let children: Vec<Target> = match el.class {
            Class::Array => self.targets(s, "elementSchema"),
            Class::Map => self
                .elem_targets(s, "mapKey")
                .into_iter()
                .chain(self.elem_targets(s, "mapValue"))
                .flat_map(|v| self.targets(v, "schema"))
                .collect(),
            Class::Object => self
                .elem_targets(s, "fields")
                .into_iter()
                .flat_map(|f| self.targets(f, "schema"))
                .collect(),
            _ => Vec::new(),
        };
        let mut depth = 0;
        for c in children {
            let below = match c {
                Target::Elem(x) if self.el(x).class.is_complex_schema() => {
                    self.walk_schema(x, stack, found)
                }
                Target::Std(g) => {
                    if g.is_geospatial() {
                        found.geospatial = true;
                    }
                    // GeoJSON schemas are Objects of (nested) coordinate Arrays.
                    std_schema_depth(g)
                }
                _ => 0,
            };
            depth = depth.max(1 + below);
        }
        stack.pop();
        found.depth = found.depth.max(depth);
        depth
    }

    /// A Component's schema may not itself contain Components.
    fn components(&mut self) {
        let mut errs = Vec::new();
        for e in 0..self.p.elements.len() {
            if self.el(e).class != Class::Component {
                continue;
            }
            for i in self.elem_targets(e, "schema") {
                let mut ifaces = vec![i];
                if let Some(anc) = self.out.ancestors.get(&i) {
                    ifaces.extend(anc);
                }
                let nested = ifaces.iter().any(|&x| {
                    self.elem_targets(x, "contents")
                        .iter()
                        .any(|&c| self.el(c).class == Class::Component)
                });
                if nested {
                    errs.push((
                        e,
                        format!(
                            "Component \"{}\" has schema {}, which itself has Components; Components cannot nest",
                            self.el(e).name().unwrap_or_default(),
                            self.el(i).id
                        ),
                    ));
                }
            }
        }
        for (e, m) in errs {
            self.err(code::COMPONENT_NESTED, e, None, m);
        }
    }

    /// Enum values: unique, and of the Enum's `valueSchema`.
    fn enums(&mut self) {
        let mut errs = Vec::new();
        for e in 0..self.p.elements.len() {
            if self.el(e).class != Class::Enum {
                continue;
            }
            let value_schema = self.targets(e, "valueSchema").first().copied();
            // Standard EnumValues (v3 units and prefixes) carry string values.
            let standard = self
                .el(e)
                .prop("enumValues")
                .is_some_and(|p| p.items.iter().any(|i| matches!(i, Item::Term(_))));
            if standard && value_schema == Some(Target::Primitive(Primitive::Integer)) {
                errs.push((
                    code::ENUM_VALUE_SCHEMA,
                    e,
                    "standard unit and prefix EnumValues have string values, but this Enum's valueSchema is integer".to_owned(),
                ));
            }
            let mut seen: Vec<&Item> = Vec::new();
            for v in self.elem_targets(e, "enumValues") {
                let Some(item) = self.el(v).prop("enumValue").and_then(|p| p.items.first()) else {
                    continue;
                };
                match (value_schema, item) {
                    (Some(Target::Primitive(Primitive::Integer)), Item::Str(_)) => errs.push((
                        code::ENUM_VALUE_SCHEMA,
                        v,
                        "enumValue must be an integer: the Enum's valueSchema is integer"
                            .to_owned(),
                    )),
                    (Some(Target::Primitive(Primitive::String)), Item::Int(_)) => errs.push((
                        code::ENUM_VALUE_SCHEMA,
                        v,
                        "enumValue must be a string: the Enum's valueSchema is string".to_owned(),
                    )),
                    _ => {}
                }
                if seen.contains(&item) {
                    errs.push((
                        code::ENUM_VALUE_DUPLICATE,
                        v,
                        "enumValue is used twice in this Enum".to_owned(),
                    ));
                }
                seen.push(item);
            }
        }
        for (c, e, m) in errs {
            self.err(c, e, None, m);
        }
    }

    /// Co-type constraints: where semantic types and adjuncts may appear, units
    /// of the right class, schema constraints of quantitative and IoT Central types.
    fn cotypes(&mut self) {
        let v = vocab();
        let mut errs = Vec::new();
        for e in 0..self.p.elements.len() {
            let el = self.el(e);
            if let Some(st) = el.semantic_type {
                let allowed: &[Class] = match el.version {
                    Version::V2 => &[Class::Property, Class::Telemetry],
                    Version::V3 => &[
                        Class::CommandRequest,
                        Class::CommandResponse,
                        Class::Field,
                        Class::MapValue,
                        Class::Property,
                        Class::Telemetry,
                    ],
                };
                if !allowed.contains(&el.class) {
                    errs.push((
                        code::COTYPE_INVALID,
                        e,
                        format!(
                            "semantic type {} cannot co-type a {}",
                            st.term,
                            el.class.term()
                        ),
                    ));
                }
                if let Some(Item::Term(u)) = el.prop("unit").and_then(|p| p.items.first())
                    && !v.unit_in_class(u, st.unit_class)
                {
                    errs.push((
                        code::UNIT_NOT_ALLOWED,
                        e,
                        format!(
                            "unit {u} is not a {} (required by semantic type {})",
                            v.unit_classes[usize::from(st.unit_class)].name,
                            st.term
                        ),
                    ));
                }
                {
                    let numeric = self.targets(e, "schema").iter().all(|t| {
                        matches!(t, Target::Primitive(p) if p.is_numeric())
                            || matches!(t, Target::Missing)
                    });
                    if !numeric {
                        errs.push((
                            code::COTYPE_INVALID,
                            e,
                            format!("semantic type {} requires a numeric schema", st.term),
                        ));
                    }
                }
            }
            // IoT Central vector types take an optional unit of their own class.
            if el.semantic_type.is_none()
                && let Some(Item::Term(u)) = el.prop("unit").and_then(|p| p.items.first())
            {
                let class = if el.adjuncts.contains(&Adjunct::AccelerationVector) {
                    "AccelerationUnit"
                } else {
                    "VelocityUnit"
                };
                if !v
                    .unit_classes
                    .iter()
                    .any(|c| c.name == class && c.units.contains(u))
                {
                    errs.push((
                        code::UNIT_NOT_ALLOWED,
                        e,
                        format!("unit {u} is not an {class}"),
                    ));
                }
            }
            for a in &el.adjuncts {
                if !a.cotypes().contains(&el.class) {
                    errs.push((
                        code::COTYPE_INVALID,
                        e,
                        format!("{a:?} cannot co-type a {}", el.class.term()),
                    ));
                    continue;
                }
                let schema = self.targets(e, "schema");
                let ok = match a {
                    Adjunct::Event => schema.iter().all(|t| match t {
                        Target::Primitive(p) => p.is_numeric() || *p == Primitive::String,
                        Target::Missing => true,
                        _ => false,
                    }),
                    Adjunct::State => schema.iter().all(|t| match t {
                        Target::Elem(x) => self.el(*x).class == Class::Enum,
                        Target::Missing | Target::StdEnum(_) => true,
                        _ => false,
                    }),
                    Adjunct::Location => schema.iter().all(|t| {
                        matches!(t, Target::Std(g) if *g != StdSchema::Vector)
                            || matches!(t, Target::Missing)
                    }),
                    Adjunct::AccelerationVector | Adjunct::VelocityVector => schema
                        .iter()
                        .all(|t| matches!(t, Target::Std(StdSchema::Vector) | Target::Missing)),
                    _ => true,
                };
                if !ok {
                    errs.push((
                        code::COTYPE_INVALID,
                        e,
                        format!(
                            "the schema of this {} does not fit co-type {a:?}",
                            el.class.term()
                        ),
                    ));
                }
            }
        }
        for (c, e, m) in errs {
            self.err(c, e, None, m);
        }
    }
    /// Rules of the v3 language extensions: annotation targets, overrides,
    /// MQTT topics and indexes, cacheable commands.
    fn extensions(&mut self) {
        let mut errs: Vec<(&'static str, ElemId, String)> = Vec::new();
        let mut overridden: HashSet<(ElemId, &str, &str)> = HashSet::new();
        let mut indexes: HashMap<(Option<ElemId>, Option<&str>, i64), ElemId> = HashMap::new();
        for e in 0..self.p.elements.len() {
            let el = self.el(e);
            if el.adjuncts.is_empty() {
                continue;
            }
            let has = |a: Adjunct| el.adjuncts.contains(&a);
            if has(Adjunct::ValueAnnotation) {
                let owner = self.owner_interface(e);
                let target = el.str_prop("annotates").unwrap_or_default();
                let sibling = self
                    .effective_contents(owner)
                    .into_iter()
                    .find(|&c| self.el(c).name() == Some(target));
                match sibling {
                    // Like the reference parser, a name that matches no sibling is not checked.
                    None => {}
                    Some(s)
                        if matches!(self.el(s).class, Class::Property | Class::Telemetry)
                            && !self.el(s).adjuncts.contains(&Adjunct::ValueAnnotation) =>
                    {
                        if has(Adjunct::Override) {
                            let overrides = el.str_prop("overrides").unwrap_or_default();
                            let sib = self.el(s);
                            let core = metamodel::properties(sib.class, sib.version);
                            let matches = sib.props.iter().any(|pv| {
                                !core.iter().any(|d| d.term == pv.def.term)
                                    && (pv.def.term == overrides || pv.key == overrides)
                            });
                            if !matches {
                                errs.push((
                                    code::OVERRIDE_TARGET,
                                    e,
                                    format!("\"overrides\" names {overrides}, which is not an extension property of \"{target}\""),
                                ));
                            } else if let Some(expected) = self.override_schema(s, overrides)
                                && !self.targets(e, "schema").contains(&expected.0)
                            {
                                errs.push((
                                    code::OVERRIDE_TARGET,
                                    e,
                                    format!("an Override of \"{overrides}\" must have schema {}", expected.1),
                                ));
                            } else if !overridden.insert((owner, target, overrides)) {
                                errs.push((
                                    code::OVERRIDE_TARGET,
                                    e,
                                    format!("\"{overrides}\" of \"{target}\" is overridden twice"),
                                ));
                            }
                        }
                    }
                    _ => errs.push((
                        code::ANNOTATION_TARGET,
                        e,
                        format!("\"annotates\" must name another Property or Telemetry of this Interface (not an annotation); found \"{target}\""),
                    )),
                }
            }
            if has(Adjunct::Override) && !has(Adjunct::ValueAnnotation) {
                errs.push((
                    code::COTYPE_INVALID,
                    e,
                    "Override may only co-type a Property that is also co-typed ValueAnnotation"
                        .to_owned(),
                ));
            }
            if has(Adjunct::Mqtt) {
                for term in ["telemetryTopic", "commandTopic"] {
                    if let Some(t) = el.str_prop(term)
                        && !mqtt_topic_pattern().is_match(t)
                    {
                        errs.push((
                            code::VALUE_PATTERN,
                            e,
                            format!("\"{term}\" \"{t}\" must be a slash-separated sequence of topic labels and {{tokens}}"),
                        ));
                    }
                }
            }
            if has(Adjunct::Indexed)
                && let Some(Item::Int(i)) = el.prop("index").and_then(|p| p.items.first())
                && let Some(prev) = indexes.insert((el.parent, el.parent_prop, *i), e)
            {
                errs.push((
                    code::INDEX_DUPLICATE,
                    e,
                    format!("index {i} is already used by {}", self.el(prev).id),
                ));
            }
            if has(Adjunct::Cacheable) {
                if !has(Adjunct::Idempotent) {
                    errs.push((
                        code::COTYPE_INVALID,
                        e,
                        "Cacheable requires the Command to be co-typed Idempotent".to_owned(),
                    ));
                }
                if let Some(ttl) = el.str_prop("ttl")
                    && !super::datatypes::is_duration(ttl)
                {
                    errs.push((
                        code::VALUE_PATTERN,
                        e,
                        format!("\"ttl\" must be an ISO 8601 duration, found \"{ttl}\""),
                    ));
                }
            }
        }
        for (c, e, m) in errs {
            self.err(c, e, None, m);
        }
    }

    /// The schema an Override of `prop` on element `s` must have: the type
    /// of the overridden property (for `unit`, the unit Enum of the semantic type).
    fn override_schema(&self, s: ElemId, prop: &str) -> Option<(Target, String)> {
        let sib = self.el(s);
        let pv = sib
            .props
            .iter()
            .find(|pv| pv.def.term == prop || pv.key == prop)?;
        match pv.def.kind {
            Kind::Str(_) => Some((Target::Primitive(Primitive::String), "string".to_owned())),
            Kind::Int { .. } => Some((Target::Primitive(Primitive::Integer), "integer".to_owned())),
            Kind::Bool => Some((Target::Primitive(Primitive::Boolean), "boolean".to_owned())),
            Kind::Elements(Range::Unit) => {
                let class = sib.semantic_type?.unit_class;
                let name = vocab().unit_classes.get(usize::from(class))?.name;
                Some((Target::StdEnum(name), name.to_owned()))
            }
            _ => None,
        }
    }

    /// An Interface's own and inherited contents.
    fn effective_contents(&self, i: ElemId) -> Vec<ElemId> {
        let mut all = self.elem_targets(i, "contents");
        if let Some(anc) = self.out.ancestors.get(&i) {
            for &a in anc {
                all.extend(self.elem_targets(a, "contents"));
            }
        }
        all
    }
}

fn mqtt_topic_pattern() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(
            r"^(?:(?:[!%-*,-.0-z|~][!$-*,-.0-z|~]*)|(?:\{(?:[A-Za-z]+:)?[A-Za-z]+\}))(?:/(?:(?:[!$-*,-.0-z|~]+)|(?:\{(?:[A-Za-z]+:)?[A-Za-z]+\})))*$",
        )
        .expect("the MQTT topic pattern is a valid regex")
    })
}

#[derive(Default)]
struct SchemaWalk {
    cycle: bool,
    depth: usize,
    array: bool,
    geospatial: bool,
}

/// Links below a standard schema: GeoJSON Objects hold coordinate Arrays
/// (point 2, lineString/multiPoint 3, polygon/multiLineString 4, multiPolygon 5).
fn std_schema_depth(g: StdSchema) -> usize {
    match g {
        StdSchema::Point => 2,
        StdSchema::LineString | StdSchema::MultiPoint => 3,
        StdSchema::Polygon | StdSchema::MultiLineString => 4,
        StdSchema::MultiPolygon => 5,
        StdSchema::GeoPoint | StdSchema::Vector => 1,
    }
}
