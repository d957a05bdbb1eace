"""The offline comparison: will the treatment beat the control? Predicted before launch from logged
feedback (``lsvcr abtest offline``). Its one input is a feedback log in a documented Parquet format
(a team's own logs; a simulation's ``feedback/``; the Open Bandit Dataset through ``obd.py``).

feedback.py        the format: ``read_feedback`` checks a log and builds one ``Feedback`` (per surface:
                   requests, candidates and their features, shown items with the logging probabilities,
                   rewards); ``write_feedback`` writes one
policies.py        a team's own targets given as files: ``table:`` (probabilities per item and position),
                   ``scores:`` (a score per logged candidate); built-in and model policies are served the
                   logged requests by simulator.counterfactual (wired in pipeline.py)
estimators.py      the registered estimators (ips, snips, dr, dm, cascade-*, model-*) and what each reads
ope.py             item and slate estimators, intervals, the cross-fitted item x position reward model
cascade.py         cascade IPS / DR and the cascade click model (the comment preview as one block)
response_model.py  user-response models fitted on the logs: the comment section and the video feed
sessions.py        the session model fitted on the logs: time budget (how long) and return gap (how soon)
obd.py             the Open Bandit Dataset (ZOZOTOWN; obp's sample) as a feedback log, with its random and
                   BTS policies as table: files (BTS's as obp's BernoulliTS computes it)
prediction.py      the prediction: treatment vs control per unit (user-day, or request), its interval,
                   session-adjusted; metrics from the catalogue (abtest/metrics_sql.py) or the logs' rewards

Never imports torch, lsvcr or simulator.
"""
