"""``bench ship``: one table per model of what each format costs and keeps (latency, size,
accuracy, parity), quoted from the tables the other commands generate."""
