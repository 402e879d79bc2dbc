"""Zoos as data for weight-space learning: a zoo's weight rows with their metrics and splits
(`rows`), and exports of them in zoobench's `wsl` format and the Small CNN Zoo layout (`export`)."""
