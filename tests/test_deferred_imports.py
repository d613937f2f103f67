"""GX is imported without SciPy's statistics and Altair (pipelines/deferred_imports.py), and both
still work for whoever uses them. Run in a fresh interpreter: this one may have imported them."""
import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_the_gx_validation_leaves_scipy_stats_and_altair_unimported():
    out = _run("""
        import sys
        import pipelines.gx_validation
        print(type(sys.modules["scipy.stats"]).__name__, type(sys.modules["altair"]).__name__,
              "scipy.stats._stats_py" in sys.modules, "altair.vegalite" in sys.modules)
    """)
    assert out == "_Deferred _Deferred False False"


def test_a_deferred_module_is_imported_when_first_used_and_is_then_the_module_itself():
    out = _run("""
        import sys
        import pipelines.gx_validation
        from great_expectations.expectations.core import expect_column_kl_divergence_to_be_less_than as kl
        print(round(kl.stats.entropy([0.5, 0.5], [0.9, 0.1]), 4), kl.alt.Chart.__name__)
        from scipy.stats import norm
        import scipy.stats
        print(type(sys.modules["scipy.stats"]).__name__, sys.modules["scipy"].stats is sys.modules["scipy.stats"],
              norm.cdf(0))
    """)
    assert out.splitlines() == ["0.5108 Chart", "module True 0.5"]
