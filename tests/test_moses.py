"""Molecules: the moses dataset, SMILES files, chem features and the MOSES metrics.

Every metric is checked against its definition (Polykovskiy et al. 2020; molecularsets/moses
metrics.py) computed here directly with RDKit on fixed SMILES lists holding invalid, empty and
duplicate (also non-canonical duplicate) strings; FCD against the ``fcd`` package's own get_fcd.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("fcd")

from rdkit import Chem, DataStructs  # noqa: E402
from rdkit.Chem import AllChem  # noqa: E402
from rdkit.Chem.Scaffolds import MurckoScaffold  # noqa: E402

from genbench.cli import main  # noqa: E402
from genbench.data.base import DATASETS, get_modality  # noqa: E402
from genbench.data.moses import Moses  # noqa: E402
from genbench.data.smiles import Molecules, read_smiles_file  # noqa: E402
from genbench.errors import DataUnavailableError, UsageError  # noqa: E402
from genbench.features import chem  # noqa: E402
from genbench.metrics import MetricOptions, evaluate_features  # noqa: E402

GEN = ["CCO", "CCO", "OCC", "c1ccccc1O", "xyz", "", "C1=CC=CC=C1O", "CC(=O)Nc1ccc(O)cc1", "C1CC2CCC1C2c1ccccc1",
       "c1ccc2ccccc2c1", "CCN(CC)CC", "O=C(O)c1ccccc1", "C[N+](C)(C)C", "c1ccc(-c2ccccc2)cc1", "C1CCC2CC3CCCCC3CC2C1",
       "c1ccc(", "O=C1NC(=S)SC1=Cc1ccccc1", "CCP(C)C"]
REF = ["CCN", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "C1CC2CCC1C2c1ccccc1", "CCCCO", "c1ccc2ccccc2c1", "Cc1ccccc1",
       "OCCN", "c1ccncc1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "c1ccc(-c2ccccc2)cc1", "C1CCC2CC3CCCCC3CC2C1"]
TRAIN = ["CCO", "c1ccccc1O", "CCCC"]
ALL = ["validity", "unique", "novelty", "filters", "intdiv", "fcd", "snn", "frag", "scaf"]


def mols(smiles):
    return [m for m in (Chem.MolFromSmiles(s) if s else None for s in smiles) if m is not None]


def fps(ms):
    return [AllChem.GetMorganFingerprintAsBitVect(m, 2, nBits=1024) for m in ms]


def counts_cosine(a: Counter, b: Counter) -> float:
    keys = sorted(set(a) | set(b))
    u, v = np.array([a[k] for k in keys], float), np.array([b[k] for k in keys], float)
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def frags(ms):
    return Counter(f for m in ms for f in Chem.MolToSmiles(AllChem.FragmentOnBRICSBonds(m)).split("."))


def scaffolds(ms):
    out = Counter()
    for m in ms:
        core = MurckoScaffold.GetScaffoldForMol(m)
        s = Chem.MolToSmiles(core)
        if s and core.GetRingInfo().NumRings() >= 2:
            out[s] += 1
    return out


@pytest.fixture(scope="module")
def result(one_torch_thread):
    orig = chem.train_hashes
    chem.train_hashes = lambda name: np.unique(np.array([chem.smiles_hash(Chem.CanonSmiles(s)) for s in TRAIN]))
    try:
        ex = chem.ChemFeatures("moses")
        fake, real = ex.extract(GEN), ex.extract(REF)
    finally:
        chem.train_hashes = orig
    return evaluate_features(ALL, fake, real, MetricOptions())


def test_validity_unique_novelty_equal_their_definitions(result):
    valid = mols(GEN)
    canon = [Chem.MolToSmiles(m) for m in valid]
    assert result.values["validity"] == pytest.approx(len(valid) / len(GEN))
    assert len(valid) == 15  # "xyz", "" and "c1ccc(" are invalid
    assert result.values["unique@1k"] == result.values["unique@10k"] == pytest.approx(len(set(canon)) / len(canon))
    assert len(set(canon)) == len(canon) - 3  # CCO x3 (one non-canonical), phenol x2 (one Kekulé)
    train = {Chem.CanonSmiles(s) for s in TRAIN}
    assert result.values["novelty"] == pytest.approx(len(set(canon) - train) / len(set(canon)))
    assert any("fewer than 1,000" in w for w in result.warnings)


def test_intdiv_and_snn_equal_tanimoto_on_morgan_bits(result):
    g, r = fps(mols(GEN)), fps(mols(REF))
    t = np.array([DataStructs.BulkTanimotoSimilarity(a, g) for a in g])  # [V, V], self-pairs included as in MOSES
    assert result.values["intdiv1"] == pytest.approx(1 - t.mean(), abs=1e-12)
    assert result.values["intdiv2"] == pytest.approx(1 - np.sqrt((t ** 2).mean(1)).mean(), abs=1e-12)
    nearest = [max(DataStructs.BulkTanimotoSimilarity(a, r)) for a in g]
    assert result.values["snn"] == pytest.approx(np.mean(nearest), abs=1e-12)


def test_frag_and_scaf_equal_count_cosines(result):
    g, r = mols(GEN), mols(REF)
    assert result.values["frag"] == pytest.approx(counts_cosine(frags(g), frags(r)), abs=1e-12)
    assert result.values["scaf"] == pytest.approx(counts_cosine(scaffolds(g), scaffolds(r)), abs=1e-12)
    assert 0 < result.values["scaf"] < 1


def test_fcd_equals_the_fcd_package(result):
    import fcd

    canon = lambda smiles: [Chem.MolToSmiles(m) for m in mols(smiles)]
    expected = fcd.get_fcd(canon(GEN), canon(REF), device="cpu")
    assert result.values["fcd"] == pytest.approx(expected, rel=1e-4)


def test_filters_follow_moses_rules(result):
    keep = lambda s: chem.passes_filters(Chem.MolFromSmiles(s))
    assert keep("CC(=O)Nc1ccc(O)cc1") and keep("c1ccc2ccccc2c1")
    assert not keep("C[N+](C)(C)C")  # charged
    assert not keep("CCP(C)C")  # phosphorus is not an allowed atom
    assert not keep("C1CCCCCCC1")  # ring of 8
    assert not keep("O=C1NC(=S)SC1=Cc1ccccc1")  # PAINS ene_rhod
    expected = np.mean([keep(Chem.MolToSmiles(m)) for m in mols(GEN)])
    assert result.values["filters"] == pytest.approx(expected)


def test_no_valid_molecule_leaves_distribution_metrics_undefined(one_torch_thread):
    ex = chem.ChemFeatures()
    res = evaluate_features([m for m in ALL if m != "novelty"], ex.extract(["xyz", "c1cc(", "Q"]), ex.extract(REF),
                            MetricOptions())
    assert res.values == {"validity": 0.0}
    assert any("unique@1k" in w and "undefined" in w for w in res.warnings)


# ------------------------------------------------------------------ data


def write_gz(path, rows):
    with gzip.open(path, "wt") as f:
        f.write("SMILES\n" + "\n".join(rows) + "\n")


def test_moses_from_data_root_and_subset(tmp_path, monkeypatch):
    monkeypatch.setattr("genbench.data.moses.molsets_data_dir", lambda: None)
    for split, fname in (("train", "train.csv.gz"), ("test", "test.csv.gz"), ("test_scaffolds", "test_scaffolds.csv.gz")):
        write_gz(tmp_path / fname, [f"C{'C' * i}O" for i in range(30)])
    got = Moses().load("test", tmp_path)
    assert isinstance(got, Molecules) and len(got) == 30 and got.x[0] == "CO"
    small = Moses("m", subset=10).load("train", tmp_path)
    assert len(small) == 10 and set(small.x) < set(got.x)
    assert small.x == Moses("m", subset=10).load("train", tmp_path).x  # seeded


def test_moses_absent_names_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr("genbench.data.moses.molsets_data_dir", lambda: None)
    with pytest.raises(DataUnavailableError, match=f"looked in {tmp_path}/moses, {tmp_path}.*pip install molsets"):
        Moses().load("test", tmp_path)


def test_moses_shipped_test_split_when_molsets_is_installed():
    from genbench.data.moses import molsets_data_dir

    if molsets_data_dir() is None or not (molsets_data_dir() / "test.csv.gz").is_file():
        pytest.skip("molsets is not installed")
    test = DATASETS.get("moses").load("test")
    assert len(test) == 176_074 and test.x[0] == "CC1C2CCC(C2)C1CN(CCO)C(=O)c1ccc(Cl)cc1"
    assert len(DATASETS.get("moses-small").load("test")) == 20_000
    assert get_modality(test.modality).default_features_for("moses") == "chem:moses"


def test_smiles_files(tmp_path):
    (tmp_path / "a.smi").write_text("CCO name1\n\nc1ccccc1\txx\n")
    assert read_smiles_file(tmp_path / "a.smi").x == ("CCO", "c1ccccc1")
    (tmp_path / "b.csv").write_text("id,Smiles\n1,CCO\n2,\n3,xyz\n")
    assert read_smiles_file(tmp_path / "b.csv").x == ("CCO", "xyz")
    (tmp_path / "c.csv").write_text("id,mol\n1,CCO\n")
    with pytest.raises(UsageError, match="no SMILES column"):
        read_smiles_file(tmp_path / "c.csv")


# ------------------------------------------------------------------ genbench eval


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_eval_smiles_files_json(tmp_path, capsys, one_torch_thread):
    (tmp_path / "gen.smi").write_text("\n".join(GEN[:5] + GEN[6:]) + "\n")
    (tmp_path / "ref.csv").write_text("SMILES\n" + "\n".join(REF) + "\n")
    code, out, err = run_cli(["eval", tmp_path / "gen.smi", tmp_path / "ref.csv", "--metrics",
                              "validity,unique,intdiv,fcd,snn,frag,scaf", "--json"], capsys)
    assert code == 0, err
    got = json.loads(out)
    assert got["features"] == "chem" and got["validity"] == pytest.approx(15 / 17)
    assert {"fcd", "snn", "frag", "scaf", "intdiv1", "intdiv2", "unique@10k"} <= set(got)


@pytest.mark.parametrize("content, message", [
    (b"", "holds no SMILES"),
    (b"\n\n  \n", "holds no SMILES"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not UTF-8 text"),
    (b"CCO\x00\x00junk", "binary data"),
])
def test_eval_refuses_bad_smiles_files_in_one_line(tmp_path, capsys, content, message):
    (tmp_path / "gen.smi").write_bytes(content)
    (tmp_path / "ref.smi").write_text("CCO\nCCN\n")
    before = (tmp_path / "gen.smi").read_bytes()
    code, out, err = run_cli(["eval", tmp_path / "gen.smi", tmp_path / "ref.smi", "--json"], capsys)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "gen.smi").read_bytes() == before


def test_eval_refuses_csv_without_smiles_column(tmp_path, capsys):
    (tmp_path / "gen.csv").write_text("id,mol\n1,CCO\n")
    code, out, err = run_cli(["eval", tmp_path / "gen.csv", tmp_path / "gen.csv"], capsys)
    assert code == 2 and "no SMILES column" in err and len(err.strip().splitlines()) == 1


def test_eval_all_invalid_is_validity_zero_with_warnings(tmp_path, capsys, one_torch_thread):
    (tmp_path / "gen.smi").write_text("xyz\nc1cc(\nQQ\n")
    (tmp_path / "ref.smi").write_text("\n".join(REF) + "\n")
    code, out, err = run_cli(["eval", tmp_path / "gen.smi", tmp_path / "ref.smi", "--metrics", "validity,fcd,snn",
                              "--json"], capsys)
    assert code == 0, err
    got = json.loads(out)
    assert got["validity"] == 0.0 and "fcd" not in got and "snn" not in got
    assert any("fcd" in w and "undefined" in w for w in got["warnings"])
