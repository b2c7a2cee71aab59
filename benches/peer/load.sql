-- The demo plant as PostGraphile serves it: twins, the relationships
-- between them (foreign keys both ways: PostGraphile's relations), and the
-- pumps as a typed table. The indexes a PostGraphile user would add for
-- the benchmark's questions (see benches/peer.rs): the relationship ends,
-- run state then power for the filtered, ordered and counted pump lists,
-- power alone for the power filter.
create table twin (
  id text primary key,
  model text not null
);
create table relationship (
  source text not null references twin (id),
  id text not null,
  name text not null,
  target text not null references twin (id),
  primary key (source, id)
);
create index relationship_target on relationship (target);
create table pump (
  id text primary key references twin (id),
  run_state text,
  power double precision,
  flow_rate double precision,
  flow_setpoint double precision
);
create index pump_run_state_power on pump (run_state, power desc, id);
create index pump_power on pump (power);
\copy twin from 'twin.csv' with (format csv)
\copy relationship from 'relationship.csv' with (format csv)
\copy pump from 'pump.csv' with (format csv)
vacuum analyze;
