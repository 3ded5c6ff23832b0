"""One module per endpoint kind (fhir-rest, hl7v2-mllp, webhook, mesh): its renderers,
content type and sender; kinds.py is the table of kinds. A new kind is one module here
plus its transform. Never imports hub.adapters: the transport is wired in bootstrap."""
