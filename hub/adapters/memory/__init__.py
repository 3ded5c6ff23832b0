"""In-memory fakes of the ports (ledger, failed store, metrics), held to the same contract
tests as the real adapters."""
