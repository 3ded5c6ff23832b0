"""Pure conversions between the hub's contracts and FHIR / HL7 v2: no I/O, clock or ids."""
