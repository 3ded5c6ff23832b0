"""What every store (SQL or in memory) accepts and keeps, shared so the fakes cannot drift
from the real adapters. Pure: no I/O."""
