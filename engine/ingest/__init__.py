"""Ingest adapters: payer remittances (X12 835) and FHIR resources into Docloop's inbound events.

`engine.ingest.x12.read_x12` and `engine.ingest.fhir.read_fhir` each turn one file into an `Outcome`: the events,
and a problem for every part that could not be read (located by segment or JSON path, never quoting a value).
`engine.ingest.cli` is the `docloop ingest` command and `engine.ingest.publish` sends events to Kafka.
The parsing libraries are imported by those modules only, so `docloop` starts fast without them.
"""

from engine.ingest.common import IngestOptions, Outcome, Problem, ProviderDirectory, ProviderLookup

__all__ = ["IngestOptions", "Outcome", "Problem", "ProviderDirectory", "ProviderLookup"]
