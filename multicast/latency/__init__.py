"""Latency: per-stage histograms of a feed (HdrHistogram's layout, compiled), their report and plot."""
