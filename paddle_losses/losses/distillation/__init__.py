"""Knowledge-distillation losses of PaddleClas.

* :mod:`.logit`: DMLLoss, KLDivLoss, DKDLoss, WSLLoss, SKDLoss, DISTLoss (student/teacher logits);
* :mod:`.feature`: DistanceLoss, RKdAngle, RkdDistance, MGDLoss, PEFDLoss (features and relations);
* :mod:`.afd`: AFDLoss (attention-based feature distillation, reads a DistillationModel output);
* :mod:`.wrappers`: the twelve ``Distillation*`` wrappers, which pick each model's output from a
  ``{model_name: output}`` dict and name the results, through the one mechanism in :mod:`.selection`.
"""
