"""Close-match suggestions for error messages."""
import difflib


def close_matches(word, candidates, n=5, cutoff=0.6):
    """Return up to ``n`` candidates that look like ``word``, case-insensitively, best first."""
    candidates = list(candidates)
    lower = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(str(word).lower(), list(lower), n=n, cutoff=cutoff)
    found = [lower[h] for h in hits]
    # Substring hits catch abbreviations such as "Triplet" -> "TripletLossV2" that difflib misses.
    for c in candidates:
        if len(found) >= n:
            break
        if c not in found and len(str(word)) >= 3 and str(word).lower() in c.lower():
            found.append(c)
    return found


def did_you_mean(word, candidates, n=5):
    """A " Did you mean ...?" sentence, or an empty string when nothing is close."""
    hits = close_matches(word, candidates, n=n)
    if not hits:
        return ""
    return " Did you mean " + " or ".join(repr(h) for h in hits) + "?"
