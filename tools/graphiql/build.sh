#!/usr/bin/env bash
# Refreshes the GraphiQL assets twingraph serves (assets/graphiql/, committed):
# installs the exact packages of package-lock.json, bundles src/index.jsx with
# esbuild. Run after changing package.json or src/; commit what changes.
# The server itself never needs Node: it embeds the committed files.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
out=../../assets/graphiql
mkdir -p "$out"
npx esbuild src/index.jsx --bundle --minify --format=iife --target=es2020 \
  --define:process.env.NODE_ENV='"production"' --legal-comments=external \
  --entry-names=graphiql --outdir="$out"
ls -l "$out"
