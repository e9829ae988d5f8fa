"""The cross-framework losses never take a PaddleClas class name and are all registered."""
import paddle_losses as pl

CROSSFW = ["PMLTripletMarginLoss", "MinedTripletMarginLoss", "SquaredL2TripletLoss", "PMLContrastiveLoss",
           "MultiSimilarityLoss", "CircleLoss", "LiftedStructureLoss", "NTXentLoss", "PMLSupConLoss",
           "PMLNPairsLoss", "ArcFaceLoss", "CosFaceLoss", "SubCenterArcFaceLoss", "ProxyAnchorLoss"]
# PaddleClas names that PML also uses, or that are one letter away from ours
PADDLECLAS = {"ContrastiveLoss", "SupConLoss", "NpairsLoss", "TripletLoss", "TripletLossV2", "CenterLoss",
              "ArcMargin", "CosMargin", "CircleMargin", "MSMLoss", "PairwiseCosface", "TriHardLoss"}


def test_all_crossfw_losses_are_registered_from_the_crossfw_package():
    for name in CROSSFW:
        assert pl.get_loss(name).__module__.startswith("paddle_losses.losses.crossfw."), name


def test_no_crossfw_name_is_a_paddleclas_name():
    assert not set(CROSSFW) & PADDLECLAS
    assert pl.get_loss("NpairsLoss") is not pl.get_loss("PMLNPairsLoss")
    assert pl.get_loss("ContrastiveLoss").__module__ != pl.get_loss("PMLContrastiveLoss").__module__


def test_no_crossfw_name_differs_from_a_paddleclas_name_only_in_case():
    # PaddleClas has NpairsLoss; PML's NPairsLoss would differ by one letter's case, so it takes the prefix.
    lowered = {n.lower() for n in PADDLECLAS}
    assert not [n for n in CROSSFW if n.lower() in lowered]
