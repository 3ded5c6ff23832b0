"""The L&D pathway report: pure functions over the ledger's coded facts (no I/O, no clock).

`measures` turns rows into exact figures, `disclosure` applies small-number suppression and is
the only way figures reach an output, `funnel_plot` draws control limits, `render` and `html`
write the outputs. Nothing here ever sees or shows a person: rows carry codes and times only.
"""
