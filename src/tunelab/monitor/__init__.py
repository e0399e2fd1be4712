"""Public-opinion monitoring: a stream of posts -> fine-tuned models -> a database -> alert
rules -> a live dashboard. ``rules`` (the rule file and the pending/firing/resolved states);
the sources, the analysis, the aggregates, the dashboard and ``tunelab monitor`` come next."""
