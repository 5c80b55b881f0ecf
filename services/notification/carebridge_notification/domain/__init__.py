"""Pure rules of notification, one module per concern: `planning` (what is sent to whom and
when, for each event), `membership` (care-team changes, consent to hear of plan changes),
`education` (which education message follows which step), `routing` (contact → channel, the
route at send time), `retry` (backoff, permanent errors) and `rendering` (a delivery's params
in words, for the templates).

No I/O here (import-linter holds it). Use cases import the module they need.
"""
