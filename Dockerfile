# twingraph built from this repository (used by docker-compose.yml).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --profile production --locked --bin twingraph

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/production/twingraph /usr/local/bin/twingraph
COPY dtdl /app/dtdl
WORKDIR /app
EXPOSE 4000
ENTRYPOINT ["twingraph", "serve"]
