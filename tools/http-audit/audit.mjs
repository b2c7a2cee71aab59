// Runs graphql-http's server audit (the GraphQL over HTTP specification's
// MUST, SHOULD and MAY points) against the server at the URL given, and
// prints every result as one JSON array on stdout. Failed results carry
// the response's status and body, so a failure explains itself.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs http://host:port/graphql');
  process.exit(2);
}
const results = await auditServer({ url });
const out = [];
for (const r of results) {
  const item = { id: r.id, name: r.name, status: r.status };
  if (r.status !== 'ok') {
    item.reason = r.reason;
    try {
      item.responseStatus = r.response.status;
      item.responseBody = await r.response.text();
    } catch (e) {
      item.responseBody = `(unreadable: ${e})`;
    }
  }
  out.push(item);
}
console.log(JSON.stringify(out));
