// The Neo4j store's constraints and indexes, applied idempotently by
// `twingraph serve --store bolt://...` at startup (statements end with ";").
// The layout they serve is described in schema/neo4j.md.

// One node per twin id.
CREATE CONSTRAINT twin_id IF NOT EXISTS FOR (n:Twin) REQUIRE n.id IS UNIQUE;

// The event log: one node per sequence number.
CREATE CONSTRAINT twin_event_seq IF NOT EXISTS FOR (e:TwinEvent) REQUIRE e.seq IS UNIQUE;

// Bookkeeping nodes (the sequence counter).
CREATE CONSTRAINT twin_graph_meta_key IF NOT EXISTS FOR (m:TwinGraphMeta) REQUIRE m.key IS UNIQUE;

// Lists by model.
CREATE INDEX twin_model IF NOT EXISTS FOR (n:Twin) ON (n.model);

// A twin's history (events name up to two twins: `twin` and `other`).
CREATE INDEX twin_event_twin IF NOT EXISTS FOR (e:TwinEvent) ON (e.twin);
CREATE INDEX twin_event_other IF NOT EXISTS FOR (e:TwinEvent) ON (e.other);

// Configuration and rollout records, read back by stream.
CREATE INDEX twin_event_stream IF NOT EXISTS FOR (e:TwinEvent) ON (e.stream);

// Time series blocks (an hour of one twin's field each), read by twin.
CREATE INDEX series_block_twin IF NOT EXISTS FOR (b:SeriesBlock) ON (b.twin);

// The sequence counter every write transaction takes.
MERGE (m:TwinGraphMeta {key: 'seq'}) ON CREATE SET m.seq = 0, m.time = 0;

// Where the rollouts stream ends: writers of rollout records expect it
// unchanged (optimistic concurrency between replicas). A database written
// before this node existed gets it from its records, once.
OPTIONAL MATCH (m:TwinGraphMeta {key: 'stream:rollouts'}) WITH m WHERE m IS NULL OPTIONAL MATCH (e:TwinEvent {stream: 'rollouts'}) WITH max(e.seq) AS last MERGE (h:TwinGraphMeta {key: 'stream:rollouts'}) ON CREATE SET h.seq = coalesce(last, 0);
