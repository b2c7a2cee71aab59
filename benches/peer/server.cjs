// PostGraphile 4 as its documentation recommends for production: the
// `public` schema of the database, no query log, no watch, no GraphiQL;
// filters (postgraphile-plugin-connection-filter) and aggregates
// (@graphile/pg-aggregates). Prints "listening" once it serves.
//   node server.cjs <postgres url> <port>
const http = require('http');
const { postgraphile } = require('postgraphile');
const ConnectionFilterPlugin = require('postgraphile-plugin-connection-filter');
const PgAggregatesPlugin = require('@graphile/pg-aggregates').default;

const [database, port] = process.argv.slice(2);
const middleware = postgraphile(database, 'public', {
  appendPlugins: [ConnectionFilterPlugin, PgAggregatesPlugin],
  disableQueryLog: true,
  retryOnInitFail: false,
  dynamicJson: true,
  setofFunctionsContainNulls: false,
  ignoreRBAC: false,
  extendedErrors: [],
  graphiql: false,
  enableQueryBatching: false,
  legacyRelations: 'omit',
});
http.createServer(middleware).listen(Number(port), '127.0.0.1', () => {
  console.log('listening');
});
