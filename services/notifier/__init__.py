"""The notifier: tells the outside world what happened, by webhook.

Pure core: `routing` (event + routes -> messages), `signing` (the
X-Wake-Signature a receiver checks), `attempts` (what an HTTP answer means,
how long to wait, what gets recorded). Shell: `delivery` (the POSTs and their
retries) and `service` (the durable consumer and the records in the log).
"""
