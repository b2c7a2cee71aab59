// GraphiQL as twingraph serves it at `/`: queries and mutations over HTTP
// (POST /graphql), subscriptions over WebSocket (graphql-transport-ws at
// /graphql/ws), both on the page's own origin. Bundled by build.sh.
import React from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { createClient } from 'graphql-ws';
import 'graphiql/graphiql.css';

const http = new URL('graphql', window.location.href);
const ws = new URL('graphql/ws', window.location.href);
ws.protocol = http.protocol === 'https:' ? 'wss:' : 'ws:';

// The headers editor's Authorization header goes along on the WebSocket
// too (as connection_init payload), so subscriptions need no other login.
let headers = {};
const fetcher = createGraphiQLFetcher({
  url: http.href,
  wsClient: createClient({
    url: ws.href,
    lazy: true,
    connectionParams: () => headers,
  }),
});

function fetchWithHeaders(params, options) {
  headers = (options && options.headers) || {};
  return fetcher(params, options);
}

createRoot(document.getElementById('graphiql')).render(
  <GraphiQL fetcher={fetchWithHeaders} isHeadersEditorEnabled={true} />,
);
