"""The software catalog: entities, ingestion from locations, and Backstage's catalog REST API."""
