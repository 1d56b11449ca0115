"""Small, dependency-free statistics for the benchmark."""


def percentile(values, q):
    """q-th percentile (0-100), linear interpolation between closest ranks."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values):
    return percentile(values, 50)


def spread(values):
    """Relative spread (max - min) / median of repeated measurements; None if < 2."""
    xs = [v for v in values if v is not None]
    if len(xs) < 2:
        return None
    m = median(xs)
    return (max(xs) - min(xs)) / m if m else None


def ratio(value, floor):
    if value is None or not floor:
        return None
    return value / floor
