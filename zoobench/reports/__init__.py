"""Reports: tables per phase and cell, heatmaps and the zoo sheet, boards and leaderboards, comparisons
of two methods, and the self-contained HTML report."""
