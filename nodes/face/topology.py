"""The MediaPipe face-mesh topology (468 vertices) and the mesh operators the 3DMM is built with.

MediaPipe 0.10.21 ships the mesh only as edge sets (`face_mesh_connections`), not as the
canonical .obj. Triangles are recovered here as the 3-cliques of the tessellation graph that are
faces: 854 cliques, minus 2 "separating" cliques whose three edges each already border two
faces, give 852 surface triangles bounded by 88 boundary edges (face oval 36, each eye 16, the
inner-lip loop 20). Capping the eye and mouth holes with strips between their upper and lower
contours (14 + 14 + 18 triangles) gives the 898 triangles of MediaPipe's canonical face model.
"""
from __future__ import annotations

from collections import Counter, defaultdict, deque

import numpy as np

N_VERTICES = 468


def _connections():
    # The module path differs from the documented `mediapipe.solutions` in the 0.10.21 wheel.
    from mediapipe.python.solutions import face_mesh_connections as fmc

    return fmc


def edge_set(name: str) -> set[tuple[int, int]]:
    """Undirected edges of a MediaPipe connection set, e.g. "TESSELATION", "LIPS", "FACE_OVAL"."""
    return {tuple(sorted(e)) for e in getattr(_connections(), "FACEMESH_" + name)}


def surface_triangles() -> np.ndarray:
    """The 852 surface triangles of the tessellation (unoriented, sorted rows)."""
    edges = edge_set("TESSELATION")
    adj: dict[int, set[int]] = defaultdict(set)
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    cliques = {tuple(sorted((a, b, c))) for a, b in edges for c in adj[a] & adj[b]}
    count = Counter(e for t in cliques for e in _tri_edges(t))
    # A separating clique's three edges each border two real faces besides itself.
    faces = [t for t in cliques if not all(count[e] == 3 for e in _tri_edges(t))]
    count = Counter(e for t in faces for e in _tri_edges(t))
    if max(count.values()) != 2:
        raise RuntimeError("MediaPipe tessellation is not a manifold after removing separating cliques")
    return np.array(sorted(faces), dtype=np.int64)


def _tri_edges(t) -> list[tuple[int, int]]:
    a, b, c = t
    return [tuple(sorted(e)) for e in ((a, b), (b, c), (a, c))]


def boundary_loops(triangles: np.ndarray) -> list[list[int]]:
    """Closed loops of boundary edges (edges used by one triangle), each as an ordered vertex list."""
    count = Counter(e for t in triangles for e in _tri_edges(t))
    nxt: dict[int, list[int]] = defaultdict(list)
    for (a, b), n in count.items():
        if n == 1:
            nxt[a].append(b)
            nxt[b].append(a)
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, prev, cur = [start], None, start
        seen.add(start)
        while True:
            cand = [v for v in nxt[cur] if v != prev]
            step = cand[0]
            if step == start:
                break
            loop.append(step)
            seen.add(step)
            prev, cur = cur, step
        loops.append(loop)
    return loops


def orient(triangles: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Orient triangles consistently (shared edges traversed in opposite directions), choosing the
    global sign so that most triangles have positive signed area in the image plane
    (x right, y down) of `points` — i.e. front faces are positive when seen frontally."""
    tris = [list(t) for t in triangles]
    by_edge: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, t in enumerate(tris):
        for e in _tri_edges(t):
            by_edge[e].append(i)
    done = np.zeros(len(tris), bool)
    for seed in range(len(tris)):
        if done[seed]:
            continue
        done[seed] = True
        queue = deque([seed])
        while queue:
            i = queue.popleft()
            t = tris[i]
            directed = {(t[0], t[1]), (t[1], t[2]), (t[2], t[0])}
            for e in _tri_edges(t):
                for j in by_edge[e]:
                    if done[j]:
                        continue
                    u = tris[j]
                    if {(u[0], u[1]), (u[1], u[2]), (u[2], u[0])} & directed:
                        tris[j] = [u[0], u[2], u[1]]  # same direction on the shared edge: flip
                    done[j] = True
                    queue.append(j)
    out = np.array(tris, dtype=np.int64)
    if np.mean(signed_area(points[:, :2], out) > 0) < 0.5:
        out = out[:, [0, 2, 1]]
    return out


def signed_area(p2: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Twice the signed area of each triangle in 2-D (x right, y down); positive = front facing."""
    a, b, c = (p2[..., triangles[:, k], :] for k in range(3))
    ab, ac = b - a, c - a
    return ab[..., 0] * ac[..., 1] - ab[..., 1] * ac[..., 0]


def split_loop(loop: list[int], left_corner: int, right_corner: int, points: np.ndarray) -> tuple[list[int], list[int]]:
    """Split a closed contour at two corner vertices into (upper, lower) chains, each running
    from `right_corner` (smaller x) to `left_corner` and including both corners."""
    i, j = loop.index(right_corner), loop.index(left_corner)
    n = len(loop)
    a = [loop[(i + k) % n] for k in range((j - i) % n + 1)]
    b = [loop[(i - k) % n] for k in range((i - j) % n + 1)]
    # y grows downwards: the upper chain has the smaller mean y.
    if points[a[1:-1], 1].mean() < points[b[1:-1], 1].mean():
        return a, b
    return b, a


def cap_strip(upper: list[int], lower: list[int], points: np.ndarray) -> list[tuple[int, int, int]]:
    """Triangulate the hole between an upper and a lower chain sharing both end vertices,
    zipping the two chains by x (merge order), as MediaPipe's canonical mesh closes eyes and mouth."""
    u, l = upper[1:-1], lower[1:-1]
    tris, iu, il = [], 0, 0
    cu, cl = upper[0], lower[0]  # current vertex on each chain (both start at the shared corner)
    while iu < len(u) or il < len(l):
        take_upper = il >= len(l) or (iu < len(u) and points[u[iu], 0] <= points[l[il], 0])
        if take_upper:
            tris.append((cu, u[iu], cl))
            cu, iu = u[iu], iu + 1
        else:
            tris.append((cu, l[il], cl))
            cl, il = l[il], il + 1
    tris.append((cu, upper[-1], cl))
    return [t for t in tris if len(set(t)) == 3]


def symmetric_pairs(points: np.ndarray, midline: list[int]) -> np.ndarray:
    """perm[i] = the vertex mirroring vertex i across the face's symmetry plane.

    The plane is first fitted to known midline vertices, then the mirrored cloud is matched to
    the original by an optimal assignment; the result must be an involution that maps mesh
    edges to mesh edges (checked by the caller's tests)."""
    from scipy.optimize import linear_sum_assignment

    mid = points[midline]
    c = mid.mean(0)
    # plane normal: the direction of least spread of the midline points
    n = np.linalg.svd(mid - c)[2][-1]
    mirrored = points - 2.0 * ((points - c) @ n)[:, None] * n[None, :]
    cost = ((points[:, None, :] - mirrored[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(len(points), np.int64)
    perm[cols] = rows  # mirrored[cols[k]] lands on points[rows[k]]
    return perm


def edge_graph(points: np.ndarray, triangles: np.ndarray):
    """Sparse symmetric matrix of edge lengths over the mesh edges (for geodesic distances)."""
    from scipy.sparse import coo_matrix

    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    e = np.unique(np.sort(e, axis=1), axis=0)
    w = np.linalg.norm(points[e[:, 0]] - points[e[:, 1]], axis=1)
    n = len(points)
    g = coo_matrix((np.r_[w, w], (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(n, n))
    return g.tocsr()


def geodesic_distance(points: np.ndarray, triangles: np.ndarray, sources) -> np.ndarray:
    """Shortest-path distance along mesh edges from the nearest vertex of `sources`."""
    from scipy.sparse.csgraph import dijkstra

    d = dijkstra(edge_graph(points, triangles), directed=False, indices=np.atleast_1d(sources))
    return np.atleast_2d(d).min(0)


def laplacian(points: np.ndarray, triangles: np.ndarray):
    """Graph Laplacian L = D - W with positive weights 1/edge-length (a smoothness operator that
    respects the mesh's uneven vertex density without cotangent weights' negative entries)."""
    from scipy.sparse import diags

    g = edge_graph(points, triangles)
    w = g.copy()
    w.data = 1.0 / np.maximum(w.data, 1e-9)
    return (diags(np.asarray(w.sum(1)).ravel()) - w).tocsr()


def harmonic_field(points: np.ndarray, triangles: np.ndarray, fixed: dict[int, float]) -> np.ndarray:
    """The smooth (harmonic) scalar field taking the given values at the fixed vertices:
    solves L u = 0 at the free vertices."""
    from scipy.sparse.linalg import spsolve

    lap = laplacian(points, triangles)
    n = len(points)
    idx = np.array(sorted(fixed), dtype=np.int64)
    val = np.array([fixed[i] for i in idx], dtype=np.float64)
    free = np.setdiff1d(np.arange(n), idx)
    u = np.zeros(n)
    u[idx] = val
    rhs = -lap[free][:, idx] @ val
    u[free] = spsolve(lap[free][:, free].tocsc(), rhs)
    return u


def smooth(field: np.ndarray, points: np.ndarray, triangles: np.ndarray, iterations: int = 2, step: float = 0.5) -> np.ndarray:
    """A few steps of Laplacian smoothing of a per-vertex field (scalar or vector)."""
    lap = laplacian(points, triangles)
    deg = lap.diagonal()
    out = np.array(field, dtype=np.float64)
    for _ in range(iterations):
        out = out - step * (lap @ out) / (deg[:, None] if out.ndim == 2 else deg)
    return out
