"""Ingestion: read locations, parse documents, resolve placeholders, validate, emit entities.

The stages are separate modules behind small interfaces so that each can be tested alone:
``reading`` (bytes from a location key), ``parsing`` (YAML documents with their lines),
``placeholders`` (``$text``/``$json``/``$yaml``), ``walk`` (a location tree into entities, relations
and errors) and ``engine`` (a pass over every root location, written to the store in batches).
"""
