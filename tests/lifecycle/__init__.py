"""A conversation's end and its owner across tasks: an end or a disconnect wherever it lands
(first frame, backlog, hand-over, takeover, a stale owner), and what a new owner says first."""
