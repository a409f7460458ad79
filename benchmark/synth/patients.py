"""Patients: demographics, phenotype, heart size and the hidden wall-segment state.

Only the image-shaping latents (age, height, phenotype, heart size, heart rate, quality) reach the
renderer. Sex and the weight-for-height residual never do, and they are the only things the hidden
segment's prior depends on: that makes the segment state independent of the image, so the posterior of
EF given an image in which it is hidden is an exact two-component mixture (see ``oracle.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Probit model of an akinetic lateral segment: P(s=1 | sex, r) = Phi(ALPHA[sex] + BETA * r), where r is
# the log weight-for-height residual (r ~ N(0, WEIGHT_RESIDUAL_SD^2)). Male sex and excess weight raise
# the risk; the constants give P(s=1) of about 0.63 (M) and 0.17 (F) once r is integrated out.
ALPHA = {"M": 0.5, "F": -1.5}
BETA = 8.0
WEIGHT_RESIDUAL_SD = 0.15
SEX_PROBABILITY = {"M": 0.5, "F": 0.5}
MISSING_SEX = 0.01
MISSING_BODY_SIZE = 0.05

PHENOTYPES = ("normal", "mildly_reduced", "severely_reduced")
# EF of the visible geometry (all segments moving) per phenotype: mean, sd, truncation range.
PHENOTYPE_EF = {"normal": (62.0, 5.0, 50.0, 78.0), "mildly_reduced": (45.0, 4.0, 38.0, 52.0),
                "severely_reduced": (28.0, 6.0, 15.0, 38.0)}

# Pediatric growth (sex-independent on purpose: sex must not shape the image): median height (cm)
# and body-mass index by age in years.
GROWTH_AGE = np.array([0, 1, 2, 5, 10, 14, 18], float)
GROWTH_HEIGHT = np.array([52, 75, 87, 110, 139, 161, 171], float)
GROWTH_BMI = np.array([13.5, 17.0, 16.5, 15.5, 17.0, 19.5, 21.5], float)
ADULT_BMI = 26.0


@dataclass(frozen=True)
class Patient:
    id: str
    age: int
    sex: str  # "M", "F" or "" (missing in the export)
    height: float  # cm, always simulated; ``body_size_observed`` says whether it is written
    weight: float  # kg
    weight_residual: float  # log(weight / expected weight for height and age)
    body_size_observed: bool
    phenotype: str
    hidden_state: int  # 1: akinetic lateral segment, 0: normal motion
    heart_rate: float  # beats per minute


def pediatric_age(rng: np.random.Generator) -> int:
    # Children's echo cohorts are skewed to infants and teenagers; a mixture reproduces that.
    return int(np.clip(rng.choice([rng.integers(0, 2), rng.integers(0, 19)], p=[0.25, 0.75]), 0, 18))


def adult_age(rng: np.random.Generator) -> int:
    return int(np.clip(round(rng.normal(65, 14)), 20, 95))


def expected_height(age: int, adult: bool, rng: np.random.Generator) -> float:
    median = 167.0 if adult else float(np.interp(age, GROWTH_AGE, GROWTH_HEIGHT))
    return median * float(np.exp(rng.normal(0, 0.045)))


def expected_weight(age: int, height: float, adult: bool) -> float:
    bmi = ADULT_BMI if adult else float(np.interp(age, GROWTH_AGE, GROWTH_BMI))
    return bmi * (height / 100.0) ** 2


def lean_bsa(age: int, height: float, adult: bool) -> float:
    """Mosteller BSA at the expected weight for height: heart size follows lean body size."""
    return float(np.sqrt(height * expected_weight(age, height, adult) / 3600.0))


def phenotype_probabilities(age: int, adult: bool) -> np.ndarray:
    """Softmax over (normal, mildly reduced, severely reduced); depends on age only (visible latents)."""
    if adult:
        logits = np.array([1.2, -0.6 + 0.03 * (age - 65), -1.2 + 0.04 * (age - 65)])
    else:  # cardiomyopathy presents most often in infancy
        logits = np.array([2.0, -0.3, -1.0 + 1.2 * np.exp(-age / 2.0)])
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def heart_rate(age: int, adult: bool, rng: np.random.Generator) -> float:
    mean = 70.0 if adult else 80.0 + 55.0 * np.exp(-age / 4.0)
    return float(np.clip(mean * np.exp(rng.normal(0, 0.12)), 45, 190))


def visible_ef(phenotype: str, rng: np.random.Generator) -> float:
    mean, sd, low, high = PHENOTYPE_EF[phenotype]
    while True:  # truncated normal by rejection; the acceptance rate is above 0.8
        value = rng.normal(mean, sd)
        if low <= value <= high:
            return float(value)


def prior_hidden(sex: str, residual: float | None) -> float:
    """P(s = 1 | the tabular variables that are known). ``sex`` "" or ``residual`` None = unknown."""
    if residual is None:
        scale = np.sqrt(1.0 + (BETA * WEIGHT_RESIDUAL_SD) ** 2)
        by_sex = {key: _normal_cdf(alpha / scale) for key, alpha in ALPHA.items()}
    else:
        by_sex = {key: _normal_cdf(alpha + BETA * residual) for key, alpha in ALPHA.items()}
    if sex in by_sex:
        return by_sex[sex]
    return sum(SEX_PROBABILITY[key] * value for key, value in by_sex.items())


def population_prior_hidden() -> float:
    return prior_hidden("", None)


def draw_patient(patient_id: str, adult: bool, rng: np.random.Generator) -> Patient:
    age = adult_age(rng) if adult else pediatric_age(rng)
    sex = str(rng.choice(list(SEX_PROBABILITY), p=list(SEX_PROBABILITY.values())))
    # Values are rounded as they are written (kg to 0.01, cm to 0.1) and the residual is recomputed from
    # the written numbers, so an observer of the FileList row knows it exactly.
    height = round(expected_height(age, adult, rng), 1)
    weight = round(expected_weight(age, height, adult) * float(np.exp(rng.normal(0, WEIGHT_RESIDUAL_SD))), 2)
    residual = float(np.log(weight / expected_weight(age, height, adult)))
    hidden = int(rng.random() < prior_hidden(sex, residual))
    written_sex = "" if rng.random() < MISSING_SEX else sex
    phenotype = str(rng.choice(PHENOTYPES, p=phenotype_probabilities(age, adult)))
    return Patient(id=patient_id, age=age, sex=written_sex, height=height, weight=weight,
                   weight_residual=residual, body_size_observed=bool(rng.random() >= MISSING_BODY_SIZE),
                   phenotype=phenotype, hidden_state=hidden, heart_rate=heart_rate(age, adult, rng))


def tabular_prior_hidden(patient: Patient, knows_body_size: bool) -> float:
    """The prior an observer holding the written tabular row has for the hidden state."""
    residual = patient.weight_residual if knows_body_size and patient.body_size_observed else None
    return prior_hidden(patient.sex, residual)


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))
