"""Every malformed NIR file or graph is a ``NIRImportError`` naming the file,
the node and the field; never a raw ``OSError`` / ``KeyError`` /
``ZeroDivisionError``, never a network that silently outputs 0."""
import h5py
import nir
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainscale.interop.nir import NIRImportError, from_nir, read_nir
from damaged_bytes import damaged

N_IN, N = 3, 4


def graph(tau=2.0, weight=None, v_threshold=1.0, output=True, dt=None):
    w = np.ones((N, N_IN), np.float32) if weight is None else weight
    nodes = {"input": nir.Input(np.array([N_IN])),
             "fc": nir.Affine(weight=w, bias=np.zeros(N, np.float32)),
             "lif": nir.LIF(tau=np.full(N, tau), r=np.ones(N), v_leak=np.zeros(N),
                            v_threshold=np.full(N, v_threshold))}
    nodes["output"] = nir.Output(np.array([N]))
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, metadata={} if dt is None else {"dt": dt})
    if not output:          # NIRGraph adds an Output to a dangling node: take it away
        del g.nodes["output"]
        g.edges = edges[:-1]
    return g


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "net.nir"
    nir.write(str(path), graph(dt=1e-3))
    return path


def test_the_good_file_imports(good_file):
    net = from_nir(str(good_file))
    assert net(np.ones(N_IN, np.float32)).shape == (N,)


@pytest.mark.parametrize("damage, match", [
    ("empty", "not an HDF5 file"), ("truncated", "not an HDF5 file|unreadable"),
    ("random", "not an HDF5 file"), ("folder", "not a file"),
    ("no_node", "no 'node' group"),
    ("no_tau", r"node 'lif' \(LIF\) cannot be built"),
    ("string_weight", r"node 'fc'.*(weight|not numeric|cannot be built)"),
])
def test_damaged_files_name_file_node_and_field(tmp_path, good_file, damage, match):
    path = good_file
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    elif damage == "folder":
        path.unlink()
        path.mkdir()
    else:
        with h5py.File(path, "r+") as f:
            if damage == "no_node":
                del f["node"]
            elif damage == "no_tau":
                del f["node/nodes/lif/tau"]
            else:
                del f["node/nodes/fc/weight"]
                f["node/nodes/fc/weight"] = np.array([[b"a", b"b", b"c"]] * N)
    with pytest.raises(NIRImportError, match=match) as e:
        from_nir(str(path))
    assert str(path) in str(e.value)
    if damage != "string_weight":       # NIR itself accepts it; from_nir checks the values
        with pytest.raises(NIRImportError):
            read_nir(str(path))


@pytest.mark.parametrize("kw, match", [
    (dict(tau=0.0), r"node 'lif' \(LIF\): field 'tau' must be > 0"),
    (dict(tau=-2.0), r"field 'tau' must be > 0"),
    (dict(tau=np.nan), r"field 'tau' holds NaN or inf"),
    (dict(v_threshold=np.inf), r"field 'v_threshold' holds NaN or inf"),
    (dict(weight=np.full((N, N_IN), np.nan, np.float32)), r"node 'fc' \(Affine\): field "
                                                           r"'weight' holds NaN or inf"),
    (dict(output=False), "no Output node"),
])
def test_bad_parameters_refused(kw, match):
    with pytest.raises(NIRImportError, match=match):
        from_nir(graph(**kw), dt=1e-3)


@pytest.mark.parametrize("dt, match", [(0.0, "dt must be a finite positive"),
                                       (-1e-3, "dt must be a finite positive"),
                                       (np.nan, "dt must be a finite positive"),
                                       ("soon", "is not a number")])
def test_bad_dt_refused(dt, match):
    with pytest.raises(NIRImportError, match=match):
        from_nir(graph(), dt=dt)
    with pytest.raises(NIRImportError, match=match):
        from_nir(graph(dt=dt))                           # from the metadata


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_bytes_and_truncations_only_raise_nir_import_error(good_file, data):
    good = good_file.read_bytes()
    good_file.write_bytes(damaged(data, good, 600))
    try:
        from_nir(str(good_file))
    except NIRImportError as e:
        assert str(good_file) in str(e)
    finally:
        good_file.write_bytes(good)
