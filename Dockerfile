# Builds the eventline binary (with the vendored librdkafka) and ships it on a slim Debian.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The store crate's SQL is checked against .sqlx/, not a live database.
ENV SQLX_OFFLINE=true
RUN cargo build --release --locked --bin eventline

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home eventline
COPY --from=build /src/target/release/eventline /usr/local/bin/eventline
USER eventline
ENTRYPOINT ["eventline"]
CMD ["up"]
