"""Unit tables for the policy's building blocks: NDC spellings, the approval window, ICD-10 code families."""

from __future__ import annotations

from datetime import date

import pytest

from worker.policy import default_policy
from worker.policy.criteria import DiseaseStageRule
from worker.policy.diagnoses import CodeFamily, display_code, normalise_code
from worker.policy.ndc import ndc_candidates, product_key
from worker.policy.window import approval_window


@pytest.mark.parametrize(
    ("product_id", "expected"),
    [
        pytest.param("70020191001", (("70020191001", "NDC_11_DIGIT"),), id="11-digit-as-is"),
        pytest.param("70020-1910-01", (("70020191001", "NDC_5_4_2_HYPHENATED"),), id="5-4-2-as-is"),
        pytest.param("0093-7474-89", (("00093747489", "NDC_4_4_2_HYPHENATED"),), id="4-4-2-pads-labeler"),
        pytest.param("31722-775-12", (("31722077512", "NDC_5_3_2_HYPHENATED"),), id="5-3-2-pads-product"),
        pytest.param("70020-1910-1", (("70020191001", "NDC_5_4_1_HYPHENATED"),), id="5-4-1-pads-package"),
        pytest.param(
            "7002019101",
            (
                ("07002019101", "NDC_10_DIGIT_AS_4_4_2"),
                ("70020019101", "NDC_10_DIGIT_AS_5_3_2"),
                ("70020191001", "NDC_10_DIGIT_AS_5_4_1"),
            ),
            id="unhyphenated-10-is-ambiguous-three-readings",
        ),
        pytest.param(
            "7002-01910-01", (("70020191001", "NDC_11_DIGIT"),), id="odd-hyphenation-11-digits-by-digits"
        ),
        pytest.param(
            "700-2019101",
            (
                ("07002019101", "NDC_10_DIGIT_AS_4_4_2"),
                ("70020019101", "NDC_10_DIGIT_AS_5_3_2"),
                ("70020191001", "NDC_10_DIGIT_AS_5_4_1"),
            ),
            id="odd-hyphenation-10-digits-read-as-unhyphenated",
        ),
        pytest.param("12345", (), id="too-short-is-nothing"),
        pytest.param("ABCDE-FGHI-JK", (), id="letters-are-nothing"),
        pytest.param("", (), id="empty-is-nothing"),
    ],
)
def test_ndc_candidates(product_id, expected):
    """Each NDC spelling reads as the documented 11-digit candidates, in a fixed order."""
    assert ndc_candidates(product_id) == expected


def test_only_the_5_4_1_reading_can_reach_an_ixempra_product():
    """No listed Ixempra segment starts with zero, so the 4-4-2 and 5-3-2 paddings can never match one."""
    products = default_policy().ndc_products
    for key in products:
        assert key[0] != "0"
        assert key[5] != "0"
    for product_id in ("7002019101", "7002019111"):
        matching = [form for ndc11, form in ndc_candidates(product_id) if product_key(ndc11) in products]
        assert matching == ["NDC_10_DIGIT_AS_5_4_1"]


def test_product_key_is_labeler_and_product():
    """The product key is the first nine digits of the 11-digit NDC: labeler plus product, no package."""
    assert product_key("70020191001") == "700201910"


@pytest.mark.parametrize(
    ("effective", "years", "expiration"),
    [
        pytest.param(date(2025, 3, 10), 1, date(2026, 3, 9), id="one-year-ordinary"),
        pytest.param(date(2024, 2, 29), 1, date(2025, 2, 28), id="leap-day-anniversary-is-Mar-1"),
        pytest.param(date(2024, 2, 29), 4, date(2028, 2, 28), id="leap-day-to-leap-year-keeps-Feb-29"),
        pytest.param(date(2024, 2, 29), 2, date(2026, 2, 28), id="leap-day-two-years"),
        pytest.param(date(2023, 3, 1), 1, date(2024, 2, 29), id="ends-on-leap-day"),
        pytest.param(date(2024, 12, 31), 1, date(2025, 12, 30), id="year-end"),
        pytest.param(date(2025, 1, 1), 1, date(2025, 12, 31), id="Jan-1"),
        pytest.param(date(9999, 6, 1), 1, date(9999, 12, 31), id="calendar-end-clamps"),
    ],
)
def test_approval_window(effective, years, expiration):
    """The window ends the day before the anniversary (Mar 1 for a Feb 29 start in a common year)."""
    assert approval_window(effective, years) == (effective, expiration)


@pytest.mark.parametrize(
    ("code", "family"),
    [
        pytest.param("C50.911", CodeFamily.PRIMARY, id="C50-primary"),
        pytest.param("C50.A2", CodeFamily.PRIMARY, id="C50.A-inflammatory-primary"),
        pytest.param("Z85.3", CodeFamily.HISTORY, id="Z85.3-history"),
        pytest.param("C77.3", CodeFamily.REGIONAL_NODE, id="C77-regional-node"),
        pytest.param("C78.01", CodeFamily.DISTANT_SECONDARY, id="C78-distant"),
        pytest.param("C79.51", CodeFamily.DISTANT_SECONDARY, id="C79-distant"),
        pytest.param("C80.0", CodeFamily.DISTANT_SECONDARY, id="C80.0-disseminated-distant"),
        pytest.param("C79.81", CodeFamily.SECONDARY_OF_SITE, id="C79.81-secondary-OF-breast-excluded"),
        pytest.param(
            "C80.1", CodeFamily.UNSPECIFIED_PRIMARY, id="C80.1-primary-unspecified-is-unknown-not-other"
        ),
        pytest.param("C80", CodeFamily.UNSPECIFIED_PRIMARY, id="C80-category-is-unknown-not-other"),
        pytest.param("C77", CodeFamily.REGIONAL_NODE, id="C77-category-alone-is-regional"),
        pytest.param("C77.2", CodeFamily.DISTANT_SECONDARY, id="C77.2-longer-prefix-beats-C77-category"),
        pytest.param("C34.90", CodeFamily.OTHER_MALIGNANT, id="C34-other-primary"),
        pytest.param("C7B.02", CodeFamily.OTHER_MALIGNANT, id="C7B-neuroendocrine-secondary-not-breast"),
        pytest.param("D05.11", CodeFamily.IN_SITU, id="D05-in-situ"),
        pytest.param("Z17.0", CodeFamily.INFORMATIONAL, id="Z17-receptor-status"),
        pytest.param("Z85.038", CodeFamily.UNRELATED, id="other-history-code-unrelated"),
        pytest.param("I10", CodeFamily.UNRELATED, id="unrelated"),
    ],
)
def test_code_families(code, family):
    """Each ICD-10 code takes the family of its longest listed prefix (C79.81 over C79, C80.0 over C80 and C)."""
    rule = next(c for c in default_policy().criteria if isinstance(c, DiseaseStageRule))
    assert rule.codes.family(normalise_code(code)) is family


@pytest.mark.parametrize(
    ("code", "dotless", "shown"),
    [
        pytest.param("C50.911", "C50911", "C50.911", id="dotted"),
        pytest.param("C50911", "C50911", "C50.911", id="undotted"),
        pytest.param("C61", "C61", "C61", id="three-character-category"),
    ],
)
def test_code_normalisation(code, dotless, shown):
    """Codes compare without the dot and are shown with it."""
    assert normalise_code(code) == dotless
    assert display_code(dotless) == shown
