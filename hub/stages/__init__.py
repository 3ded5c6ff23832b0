"""The stages of an alert's journey (intake, follow-ups, delivery, outcomes, overdue, dead
letters, the endpoint gate). They speak only through hub.ports: never import hub.adapters."""
