"""Each stage's policy, checked in seconds: its pure plan, and its shell against the in-memory
fakes (MemoryLedger, MemoryPublisher, FakeSender, a fixed clock)."""
