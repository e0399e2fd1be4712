"""`tunelab assistant`: a customer-service assistant over an FAQ and documents. A knowledge base
(``kb``) holds the entries, a BM25 index and a dense index; ``retrieval`` fuses them; the
``assistant`` answers from the best match or hands the conversation off to a human as a ticket
(``tickets``) when its calibrated confidence (``confidence``) is too low."""
