"""The fast stick simulator against pymatgen's XRDCalculator, the reference it must equal."""

import tarfile
import warnings
from importlib import resources

import numpy as np
import pytest
from pymatgen.core import Lattice, Species, Structure

from xrdbench.simulate import ENGINES, get_engine, simulate_sticks, simulate_sticks_arrays, simulate_sticks_pymatgen
from xrdbench.simulate import sticks as sticks_module

POSITION_TOL_DEG = 1e-6
INTENSITY_TOL = 1e-3  # on the 0–100 scale

# (space group, lattice, species, fractional coordinates): every crystal system, several
# centrings, special and general positions.
INORGANIC = {
    "triclinic_P1": ("P1", Lattice.from_parameters(5.1, 6.3, 7.2, 78, 85, 101), ["Si", "O", "O", "Al"],
                     [[0.1, 0.2, 0.3], [0.4, 0.1, 0.9], [0.7, 0.6, 0.2], [0.33, 0.81, 0.55]]),
    "triclinic_P-1": ("P-1", Lattice.from_parameters(7.6, 8.1, 9.3, 101.2, 95.4, 88.7), ["Cu", "N", "C"],
                      [[0.12, 0.23, 0.31], [0.41, 0.12, 0.87], [0.7, 0.66, 0.21]]),
    "monoclinic_P2_1/c": ("P2_1/c", Lattice.monoclinic(5.2, 9.1, 7.4, 104.3), ["Ca", "S", "O"],
                          [[0.25, 0.1, 0.3], [0.6, 0.35, 0.12], [0.9, 0.2, 0.45]]),
    "monoclinic_C2/c": ("C2/c", Lattice.monoclinic(9.7, 8.9, 5.3, 105.8), ["Mg", "Si", "O"],
                        [[0.0, 0.9, 0.25], [0.29, 0.09, 0.23], [0.12, 0.08, 0.14]]),
    "monoclinic_Cc": ("Cc", Lattice.monoclinic(11.2, 6.1, 8.4, 96.0), ["K", "P", "O"],
                      [[0.0, 0.12, 0.0], [0.31, 0.25, 0.41], [0.21, 0.44, 0.12]]),
    "orthorhombic_Pnma": ("Pnma", Lattice.orthorhombic(10.3, 6.0, 4.7), ["Fe", "P", "O", "Li"],
                          [[0.28, 0.25, 0.97], [0.09, 0.25, 0.42], [0.1, 0.25, 0.74], [0.0, 0.0, 0.0]]),
    "orthorhombic_Cmcm": ("Cmcm", Lattice.orthorhombic(3.8, 11.2, 4.2), ["U", "Ge"],
                          [[0.0, 0.1, 0.25], [0.0, 0.4, 0.25]]),
    "orthorhombic_Fddd": ("Fddd", Lattice.orthorhombic(10.4, 12.9, 24.5), ["S"], [[0.14, 0.03, 0.29]]),
    "orthorhombic_Pbca": ("Pbca", Lattice.orthorhombic(8.1, 9.2, 11.3), ["Zn", "Cl"],
                          [[0.11, 0.22, 0.33], [0.35, 0.05, 0.4]]),
    "tetragonal_I4_1/amd": ("I4_1/amd", Lattice.tetragonal(3.785, 9.514), ["Ti", "O"],
                            [[0, 0.75, 0.125], [0, 0.75, 0.3333]]),
    "tetragonal_P4_2/mnm": ("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]]),
    "tetragonal_I4/mmm": ("I4/mmm", Lattice.tetragonal(3.9, 12.7), ["La", "Cu", "O", "O"],
                          [[0, 0, 0.36], [0, 0, 0], [0, 0.5, 0], [0, 0, 0.18]]),
    "tetragonal_P4/nmm": ("P4/nmm", Lattice.tetragonal(3.96, 8.6), ["Fe", "As", "La", "O"],
                          [[0.75, 0.25, 0.5], [0.25, 0.25, 0.65], [0.25, 0.25, 0.14], [0.75, 0.25, 0.0]]),
    "trigonal_R-3m": ("R-3m", Lattice.hexagonal(2.88, 14.2), ["Li", "Co", "O"],
                      [[0, 0, 0.5], [0, 0, 0], [0, 0, 0.26]]),
    "trigonal_R-3c": ("R-3c", Lattice.hexagonal(4.76, 12.99), ["Al", "O"], [[0, 0, 0.352], [0.306, 0, 0.25]]),
    "trigonal_P3_121": ("P3_121", Lattice.hexagonal(4.913, 5.405), ["Si", "O"],
                        [[0.47, 0, 1 / 3], [0.414, 0.268, 0.286]]),
    # Rhombohedral axes: from_spacegroup wants hexagonal ones, so P1 with R3m-like (x, x, x) sites.
    "trigonal_rhombohedral_axes": ("P1", Lattice.rhombohedral(5.5, 57.0), ["Bi", "Fe", "O", "O", "O"],
                                   [[0, 0, 0], [0.22, 0.22, 0.22], [0.44, 0.02, 0.95], [0.02, 0.95, 0.44],
                                    [0.95, 0.44, 0.02]]),
    "hexagonal_P6_3/mmc": ("P6_3/mmc", Lattice.hexagonal(3.21, 5.21), ["Mg"], [[1 / 3, 2 / 3, 0.25]]),
    "hexagonal_P6_3mc": ("P6_3mc", Lattice.hexagonal(3.25, 5.2), ["Zn", "O"],
                         [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]]),
    "hexagonal_P6/mmm": ("P6/mmm", Lattice.hexagonal(5.0, 4.0), ["La", "Ni"], [[0, 0, 0], [1 / 3, 2 / 3, 0]]),
    "cubic_Fm-3m": ("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "cubic_Fd-3m": ("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0.125, 0.125, 0.125]]),
    "cubic_Pm-3m": ("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]),
    "cubic_Im-3m": ("Im-3m", Lattice.cubic(3.165), ["W"], [[0, 0, 0]]),
    "cubic_P2_13": ("P2_13", Lattice.cubic(6.7), ["Fe", "Si"], [[0.137, 0.137, 0.137], [0.842, 0.842, 0.842]]),
    "cubic_Ia-3d": ("Ia-3d", Lattice.cubic(12.38), ["Y", "Al", "Al", "O"],
                    [[0.125, 0, 0.25], [0, 0, 0], [0.375, 0, 0.25], [-0.03, 0.05, 0.15]]),
}

# A deterministic sample of CoRE MOF 2019-ASR cells: ~50–300 atoms, a triclinic one and one of 1,280.
MOF_MEMBERS = {
    "CAXVII_clean.cif": None,  # 54 atoms, triclinic
    "GOMRAC_clean.cif": None,  # 144 atoms
    "EGABAR_clean.cif": None,  # 184 atoms
    "DOCKOW_clean.cif": None,  # 223 atoms
    "BERGAI_clean.cif": None,  # 288 atoms
    "MARXEK_clean.cif": None,  # 76 atoms, not centrosymmetric: the complex GEMM path
    "XUWTAK_clean.cif": None,  # 144 atoms, not centrosymmetric
    "WOYJOL_clean.cif": (5.0, 40.0),  # 1,280 atoms: pymatgen needs seconds for 5–90°
}


def _build(name):
    space_group, lattice, species, coords = INORGANIC[name]
    return Structure.from_spacegroup(space_group, lattice, species, coords)


def assert_same_sticks(fast, reference):
    two_theta, intensity = fast[:2]
    ref_two_theta, ref_intensity = reference[:2]
    assert len(two_theta) == len(ref_two_theta), "peak count differs from pymatgen"
    assert two_theta.dtype == intensity.dtype == np.float64
    assert np.all(np.diff(two_theta) > 0)
    np.testing.assert_allclose(two_theta, ref_two_theta, rtol=0, atol=POSITION_TOL_DEG)
    np.testing.assert_allclose(intensity, ref_intensity, rtol=0, atol=INTENSITY_TOL)
    assert intensity.max() == pytest.approx(100.0)


@pytest.fixture(scope="module")
def core_mofs():
    archive = resources.files("CoRE_MOF") / "data" / "2019-ASR.tar.xz"
    found = {}
    with resources.as_file(archive) as path, tarfile.open(path, "r|xz") as tar:
        for member in tar:
            if member.name in MOF_MEMBERS:
                text = tar.extractfile(member).read().decode()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    found[member.name] = Structure.from_str(text, fmt="cif")
                if len(found) == len(MOF_MEMBERS):
                    break
    assert set(found) == set(MOF_MEMBERS)
    return found


@pytest.mark.parametrize("name", sorted(INORGANIC))
def test_inorganic_matches_pymatgen(name):
    structure = _build(name)
    assert_same_sticks(simulate_sticks(structure), simulate_sticks_pymatgen(structure))


@pytest.mark.parametrize("name", sorted(MOF_MEMBERS))
def test_core_mof_matches_pymatgen(core_mofs, name):
    structure = core_mofs[name]
    two_theta_range = MOF_MEMBERS[name] or (5.0, 90.0)
    fast = simulate_sticks(structure, two_theta_range=two_theta_range)
    assert_same_sticks(fast, simulate_sticks_pymatgen(structure, two_theta_range=two_theta_range))
    if name == "WOYJOL_clean.cif":
        assert len(structure) > 1000
    if name == "CAXVII_clean.cif":
        assert structure.lattice.is_orthogonal is False


@pytest.mark.parametrize(
    ("wavelength", "two_theta_range"), [(0.71073, (2.0, 60.0)), (1.54056, (10.0, 120.0)), (2.291, None)]
)
@pytest.mark.parametrize("name", ["triclinic_P1", "hexagonal_P6_3mc", "cubic_Fm-3m", "monoclinic_C2/c"])
def test_other_wavelengths_and_ranges(name, wavelength, two_theta_range):
    structure = _build(name)
    assert_same_sticks(
        simulate_sticks(structure, wavelength, two_theta_range),
        simulate_sticks_pymatgen(structure, wavelength, two_theta_range),
    )


def test_partial_occupancy_and_oxidation_states():
    lattice = Lattice.cubic(4.2)
    species = [{"Li": 0.5, "Mn": 0.3}, {Species("O", -2): 0.9}]
    structure = Structure.from_spacegroup("Fm-3m", lattice, species, [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert not structure.is_ordered
    assert_same_sticks(simulate_sticks(structure), simulate_sticks_pymatgen(structure))
    spinel = Structure.from_spacegroup(
        "Fd-3m", Lattice.cubic(8.4), [Species("Fe", 3), {"Fe": 0.5, "Ni": 0.5}, Species("O", -2)],
        [[0.125, 0.125, 0.125], [0.5, 0.5, 0.5], [0.255, 0.255, 0.255]],
    )
    assert_same_sticks(simulate_sticks(spinel), simulate_sticks_pymatgen(spinel))


def test_debye_waller_factors():
    structure = _build("orthorhombic_Pnma")
    dw = {"Fe": 0.5, "O": 1.2, "P": 0.3}
    fast = simulate_sticks(structure, debye_waller_factors=dw)
    assert_same_sticks(fast, simulate_sticks_pymatgen(structure, debye_waller_factors=dw))
    assert not np.allclose(fast[1], simulate_sticks(structure)[1], atol=INTENSITY_TOL)


@pytest.mark.parametrize("name", ["cubic_Fm-3m", "cubic_Ia-3d", "hexagonal_P6_3mc", "triclinic_P-1"])
def test_hkl_families_match_pymatgen(name):
    structure = _build(name)
    two_theta, intensity, families = simulate_sticks(structure, return_hkl=True)
    reference = simulate_sticks_pymatgen(structure, return_hkl=True)
    assert_same_sticks((two_theta, intensity), reference)
    assert len(families.peak_offsets) == len(two_theta) + 1
    # The pymatgen engine's families are pymatgen's DiffractionPattern.hkls, repacked.
    assert families.to_pymatgen() == reference[2].to_pymatgen()
    assert np.array_equal(families.multiplicity, reference[2].multiplicity)


def test_rocksalt_multiplicities():
    _, _, families = simulate_sticks(_build("cubic_Fm-3m"), return_hkl=True)
    first = [tuple(families.hkl[families.peak_offsets[i]]) for i in range(3)]
    assert first == [(1, 1, 1), (2, 0, 0), (2, 2, 0)]
    assert families.peak_multiplicity[:3].tolist() == [8, 6, 12]


@pytest.mark.parametrize("direct_entries", [0, 10**12])
@pytest.mark.parametrize("name", ["CAXVII_clean.cif", "MARXEK_clean.cif"])
def test_phase_paths_and_chunking_agree(core_mofs, monkeypatch, direct_entries, name):
    """The factorised GEMM path, the direct path and tiny chunks give the same pattern."""
    structure = core_mofs[name]
    reference = simulate_sticks(structure)
    monkeypatch.setattr(sticks_module, "DIRECT_PHASE_ENTRIES", direct_entries)
    arrays = sticks_module.structure_to_arrays(structure)
    for chunk_entries in (1, 500, 1 << 20):
        result = simulate_sticks_arrays(*arrays, chunk_entries=chunk_entries)
        assert len(result[0]) == len(reference[0])
        np.testing.assert_array_equal(result[0], reference[0])
        np.testing.assert_allclose(result[1], reference[1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", sorted(INORGANIC))
def test_factorized_path_on_small_cells(monkeypatch, name):
    """Small cells normally take the direct path; force the GEMM one, in every crystal system."""
    monkeypatch.setattr(sticks_module, "DIRECT_PHASE_ENTRIES", 0)
    structure = _build(name)
    assert_same_sticks(simulate_sticks(structure), simulate_sticks_pymatgen(structure))


def test_centrosymmetry_detection(core_mofs):
    def representatives(structure):
        lattice_matrix, frac_coords, elements, occupancies = sticks_module.structure_to_arrays(structure)
        _, groups = sticks_module._element_groups(elements)
        return sticks_module._inversion_representatives(frac_coords, groups, occupancies)

    rocksalt = _build("cubic_Fm-3m")  # Na on inversion centres, Cl too: every atom self-inverse or paired
    atoms, weights = representatives(rocksalt)
    assert weights.sum() == pytest.approx(len(rocksalt))
    caxvii = core_mofs["CAXVII_clean.cif"]
    atoms, weights = representatives(caxvii)
    assert len(atoms) < len(caxvii) and weights.sum() == pytest.approx(len(caxvii))
    assert representatives(core_mofs["MARXEK_clean.cif"]) is None
    assert representatives(_build("hexagonal_P6_3mc")) is None


def test_arrays_entry_point():
    structure = _build("monoclinic_P2_1/c")
    lattice_matrix = structure.lattice.matrix
    elements = [site.specie.symbol for site in structure]
    fast = simulate_sticks_arrays(lattice_matrix, structure.frac_coords, elements)
    assert_same_sticks(fast, simulate_sticks_pymatgen(structure))
    with pytest.raises(ValueError, match="one row per scatterer"):
        simulate_sticks_arrays(lattice_matrix, structure.frac_coords, elements[:-1])
    with pytest.raises(ValueError, match="Xx"):
        simulate_sticks_arrays(lattice_matrix, structure.frac_coords[:1], ["Xx"])


def test_no_reflection_in_range_gives_empty_arrays():
    two_theta, intensity = simulate_sticks(_build("cubic_Im-3m"), two_theta_range=(5.0, 10.0))
    assert two_theta.shape == intensity.shape == (0,)


def test_engine_registry():
    assert set(ENGINES) == {"fast", "pymatgen"}
    assert get_engine("fast") is simulate_sticks
    assert get_engine("pymatgen") is simulate_sticks_pymatgen
    with pytest.raises(ValueError, match="simulate.engine"):
        get_engine("vasp")


def test_anisotropic_displacements_refused():
    structure = _build("cubic_Fm-3m")
    structure.add_site_property("U11_cif", [0.01] * len(structure))
    with pytest.raises(ValueError, match="U11_cif"):
        simulate_sticks(structure)
