"""Trust checks for attribution maps: model-parameter randomisation (Adebayo et al. 2018) and
deletion / insertion faithfulness (Petsiuk et al. 2018), served as the ``evaluate_attribution`` method."""
