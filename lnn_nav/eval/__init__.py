"""Evaluation: latency measurement now; closed-loop benchmark and reports to come."""
