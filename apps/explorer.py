"""befa-viz explorer: items, users and datasets with and without the BeFA adapter.

Run with::

    streamlit run apps/explorer.py -- --workspace befa-workspace

The workspace is the ``--workspace`` argument, else ``$BEFA_VIZ_WORKSPACE``, else
``./befa-workspace``. This file holds widgets, ``pipeline``/``viz`` calls and layout only;
everything else lives in :mod:`befa_viz.pipeline` (see :mod:`befa_viz.explore`).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import pandas as pd
import streamlit as st

from befa_viz import BefaVizError, pipeline, viz
from befa_viz.pipeline import Workspace
from befa_viz.workspace import WORKSPACE_ENV

VIEWS = ("Item", "User", "Dataset")
#: Choices that survive switching views (Streamlit drops the state of widgets not drawn).
PERSISTENT = ("view", "dataset", "pair", "item_id", "modality", "method", "target", "n_steps",
              "compare", "sanity", "user", "k", "n_items")


# ---- arguments and per-user state ----------------------------------------------------------
def default_workspace() -> str:
    """``--workspace`` after ``--`` on the streamlit command line, else the environment."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--workspace")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.workspace or os.environ.get(WORKSPACE_ENV) or "befa-workspace"


def keep_state() -> None:
    for key in PERSISTENT:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def open_item(item_id: str, *, user: str | None = None) -> None:
    """Button callback: show ``item_id`` on the item page (explained for ``user`` if given)."""
    st.session_state["item_id"] = item_id
    st.session_state["view"] = "Item"
    if user is not None:
        st.session_state["user"] = user
        st.session_state["target"] = "user_score"
    elif st.session_state.get("target") == "user_score":
        st.session_state["target"] = pipeline.target_names()[0]


def show_error(e: BefaVizError) -> None:
    st.error(str(e.args[0]) if e.args else str(e))  # args[0]: KeyError's str() adds quotes


# ---- memoised library calls ------------------------------------------------------------------
@st.cache_data(show_spinner=False, ttl=30)
def dataset_names(root: str) -> list[str]:
    return Workspace(root).dataset_names()


@st.cache_resource(show_spinner=False, ttl=600)
def load_dataset(root: str, name: str) -> Any:
    return Workspace(root).load_dataset(name)


@st.cache_data(show_spinner=False, ttl=30)
def run_pairs(root: str, dataset: str) -> list[Any]:
    return pipeline.run_pairs(root, dataset)


@st.cache_resource(show_spinner=False, ttl=600)
def open_runs(root: str, run: str) -> dict[str, Any]:
    return pipeline.open_run_pair(root, run)


@st.cache_data(show_spinner=False, max_entries=512)
def explain(root: str, run: str, item_id: str, modality: str, method: str, target: str,
            n_steps: int, user: str | None, compare: bool, sanity: bool) -> Any:
    return pipeline.explain_item(item_id, workspace=root, run=run, modality=modality,
                                 target=target, method=method, n_steps=n_steps, user=user,
                                 compare_adapter=compare, sanity=sanity)


@st.cache_data(show_spinner=False, max_entries=512)
def heatmap_png(_explanation: Any, key: tuple[Any, ...]) -> bytes:
    return pipeline.explanation_png(_explanation, dpi=90)


@st.cache_data(show_spinner=False, max_entries=256)
def neighbours(root: str, run: str, item_id: str, modality: str, k: int) -> dict[str, Any]:
    return pipeline.nearest_items(open_runs(root, run), item_id, modality=modality, k=k)


@st.cache_data(show_spinner=False, max_entries=256)
def recommendations(root: str, run: str, user: str, k: int) -> dict[str, Any]:
    return pipeline.recommend(open_runs(root, run), user, k=k)


@st.cache_data(show_spinner=False, ttl=30)
def adapter_metrics(root: str, dataset: str) -> Any:
    return pipeline.adapter_metrics(root, dataset)


# ---- sidebar ---------------------------------------------------------------------------------
def sidebar() -> dict[str, Any] | None:
    """Workspace, dataset, run and attribution pickers; ``None`` when there is nothing to show."""
    sb = st.sidebar
    sb.title("befa-viz explorer")
    root = sb.text_input("Workspace", value=default_workspace(), key="workspace",
                         help="Folder made by `make demo` or `befa-viz data import`.")
    if sb.button("Reload workspace", help="Pick up new datasets, runs and caches."):
        st.cache_data.clear()
        st.cache_resource.clear()
        pipeline.clear_memos()  # encoders and runs the library keeps between requests
    sb.radio("View", VIEWS, key="view", horizontal=True)
    ws = Workspace(root)
    names = dataset_names(str(ws.root))
    if not names:
        what = "does not exist" if not ws.root.exists() else "has no dataset yet"
        st.title("befa-viz explorer")
        st.info(f"The workspace {ws.root} {what}. Create the demo workspace with `make demo` "
                "(or import your data with `befa-viz data import`), then press *Reload "
                f"workspace*. Open another folder with `-- --workspace DIR` or "
                f"`{WORKSPACE_ENV}`.")
        return None
    if st.session_state.get("dataset") not in names:
        st.session_state["dataset"] = names[-1]
    dataset = sb.selectbox("Dataset", names, key="dataset")
    if st.session_state.setdefault("_shown_dataset", dataset) != dataset:
        st.session_state["_shown_dataset"] = dataset  # ids of the old dataset mean nothing here
        for key in ("item_id", "user", "_last_query"):
            st.session_state.pop(key, None)
        st.query_params.pop("item", None)
    ds = load_dataset(str(ws.root), dataset)
    pairs = run_pairs(str(ws.root), dataset)
    labels = {p.main: p.label for p in pairs}
    explainable = [p.main for p in pairs if p.modalities]
    if pairs and st.session_state.get("pair") not in labels:
        paired = [p.main for p in pairs if p.paired and p.modalities]
        st.session_state["pair"] = (paired or explainable or [pairs[0].main])[0]
    pair = None
    if pairs:
        main = sb.selectbox("Runs (paired by adapter)", list(labels), key="pair",
                            format_func=labels.get)
        pair = next(p for p in pairs if p.main == main)

    sb.subheader("Attribution")
    has_images = any(ds.catalog.has_image(i) for i in range(ds.n_items))
    modalities = [m for m in ("image", "text") if pair is None or m in pair.modalities]
    if not has_images and "image" in modalities:
        modalities.remove("image")
    if not modalities:
        modalities = ["text"]
    if st.session_state.get("modality") not in modalities:
        st.session_state["modality"] = modalities[0]
    modality = sb.radio("Modality", modalities, key="modality", horizontal=True)
    methods = pipeline.method_names(modality)
    if st.session_state.get("method") not in methods:
        st.session_state["method"] = "ig" if "ig" in methods else methods[0]
    method = sb.selectbox("Method", methods, key="method")
    user = st.session_state.get("user")
    targets = pipeline.target_names(with_user=user is not None)
    if st.session_state.get("target") not in targets:
        st.session_state["target"] = targets[0]
    target = sb.selectbox("Target", targets, key="target",
                          help="content_score: the content pathway's score for the item's "
                               "users (comparable without and with the adapter).")
    if "n_steps" not in st.session_state:
        st.session_state["n_steps"] = 16
    n_steps = sb.number_input("Steps", min_value=1, max_value=256, step=8, key="n_steps",
                              help="Integration steps of path methods (IG).")
    paired = pair is not None and pair.paired
    if "compare" not in st.session_state:
        st.session_state["compare"] = True
    compare = sb.checkbox("Compare without vs with adapter", key="compare",
                          disabled=not paired) and paired
    sanity = sb.checkbox("Sanity controls (slower)", key="sanity",
                         help="Model-randomisation, random-target and input-only controls.")
    return {"root": str(ws.root), "ws": ws, "dataset": dataset, "ds": ds, "pairs": pairs,
            "pair": pair, "has_images": has_images, "modality": modality, "method": method,
            "target": target, "n_steps": int(n_steps), "compare": compare, "sanity": sanity,
            "user": user if target == "user_score" else None}


# ---- item view -------------------------------------------------------------------------------
def pick_item(ctx: dict[str, Any]) -> str | None:
    ds = ctx["ds"]
    query = st.text_input("Search items by original id or title", key="search",
                          placeholder="e.g. an item id, or words of its title")
    matches = pipeline.search_items(ds, query, limit=50)
    if query != st.session_state.get("_last_query"):
        st.session_state["_last_query"] = query
        if query and len(matches):
            st.session_state["item_id"] = matches["item_id"].iloc[0]
    if query and not len(matches):
        st.warning(f"No item of dataset {ctx['dataset']!r} ({ds.n_items} items) has the id "
                   f"or title words {query!r}.")
    current = st.session_state.get("item_id")
    if current is None:
        current = st.query_params.get("item") or (matches["item_id"].iloc[0] if len(matches)
                                                  else None)
        st.session_state["item_id"] = current
    options = matches["item_id"].tolist()
    titles = dict(zip(matches["item_id"], matches["title"], strict=True))
    if current is not None and current not in options:
        options.insert(0, current)
    if not options:
        return None
    if current is not None and current not in titles:
        try:
            titles[current] = pipeline.item_details(ds, current)["title"]
        except BefaVizError as e:
            show_error(e)
            return None
    choice = st.selectbox("Item", options, index=options.index(current) if current else 0,
                          format_func=lambda i: f"{i} — {titles.get(i, '')}")
    st.session_state["item_id"] = choice
    st.query_params["item"] = choice
    return str(choice)


def item_header(ctx: dict[str, Any], item: dict[str, Any]) -> None:
    st.header(f"{item['item_id']} — {item['title']}")
    left, right = st.columns([1, 2])
    with left:
        if item["image_path"]:
            st.image(item["image_path"], caption="item image", width=220)
        elif not ctx["has_images"]:
            st.info(f"Dataset {ctx['dataset']!r} has no images: only text can be explained.")
        else:
            st.info("This item has no image.")
    with right:
        if item["text"]:
            st.markdown(f"> {item['text']}")
        meta = {k: v for k, v in item["meta"].items() if k not in ("id", "title", "text")}
        st.table(pd.DataFrame({"value": [str(v) for v in meta.values()]}, index=list(meta)))


def explanation_panel(ctx: dict[str, Any], item: dict[str, Any]) -> None:
    pair = ctx["pair"]
    if pair is None:
        st.info(f"Dataset {ctx['dataset']!r} has no complete training run yet, so there is "
                "nothing to explain. Train a pair, e.g. `befa-viz train --model vbpr --adapter "
                "none` and `befa-viz train --model vbpr --adapter befa`.")
        return
    if not pair.modalities:
        st.info(f"Run {pair.main} ({pair.model}) uses no content features, so it has no "
                "heatmaps. Pick a multimodal run (vbpr, lattice, freedom, ...).")
        return
    if not pair.paired:
        other = "befa" if pair.with_ is None else "none"
        st.warning(f"Run {pair.main} has no paired run with adapter {other!r}; showing it "
                   f"alone. Train the pair with `befa-viz train --model {pair.model} --adapter "
                   f"{other} --seed {pair.seed} --dataset {ctx['dataset']}`.")
    if ctx["modality"] == "image" and not item["image_path"]:
        st.info(f"Item {item['item_id']} has no image; switch the modality to text.")
        return
    args = (ctx["root"], pair.main, item["item_id"], ctx["modality"], ctx["method"],
            ctx["target"], ctx["n_steps"], ctx["user"], ctx["compare"], ctx["sanity"])
    what = (f"{ctx['method']} ({ctx['n_steps']} steps)" if ctx["method"] in ("ig", "ig_smooth",
            "layer_ig") else ctx["method"])
    with st.spinner(f"Computing {what} heatmaps of item {item['item_id']}: read from the "
                    "attribution cache when present, else computed and cached (a few seconds "
                    "per map)…"):
        try:
            e = explain(*args)
        except BefaVizError as err:
            show_error(err)
            return
        png = heatmap_png(e, args)
    src = "from the attribution cache" if all(e.cached.values()) else "computed now, now cached"
    for_user = f" for user {ctx['user']}" if ctx["user"] else ""
    st.subheader(f"Heatmaps: {ctx['target']}{for_user}, {what}")
    if ctx["modality"] == "image":
        st.image(png, caption=f"Without vs with adapter on one shared colour scale ({src}).")
    else:
        pair_atts = e.figure_pairs()
        html = (viz.token_pair_html(*pair_atts) if isinstance(pair_atts, tuple)
                else viz.token_html(pair_atts))
        st.html(html)
        st.caption(f"Token highlighting on one shared scale ({src}).")
    st.markdown("**Scores**")
    st.dataframe(pd.DataFrame(e.figure_scores()).T, width="content")
    st.caption(f"Drift and omission against the {e.relevance['source'].replace('_', ' ')} "
               f"map ({e.relevance['note']}). Deletion/insertion AUC: faithfulness of the "
               "attributed target.")
    gate = e.gate.get("with") or {}
    if gate.get("item_gate_mean") is not None:
        st.caption(f"Adapter gate of this item: mean {gate['item_gate_mean']:.3f} (min "
                   f"{gate['item_gate_min']:.3f}, max {gate['item_gate_max']:.3f}); over all "
                   f"items: mean {gate.get('mean', float('nan')):.3f}, share > 0.9 "
                   f"{gate.get('frac_above_0.9', float('nan')):.2f}. A gate pinned near 1 "
                   "means the adapter passes the behaviour embedding through unchanged.")
    for variant, run in open_runs(ctx["root"], pair.main).items():  # train_features runs only
        note = run.feature_note(ctx["modality"], item["item_idx"])
        if note:
            st.caption(f"Run {variant} adapter: {note}.")
    if e.sanity:
        st.markdown("**Sanity controls** (Spearman ρ with each control; high ρ = the map "
                    "does not depend on the model/target)")
        st.dataframe(pd.DataFrame({v: {**s["rho"], "passes": s["passes"]}
                                   for v, s in e.sanity.items()}).T, width="content")
    stem = f"{item['item_id']}-{ctx['modality']}-{ctx['method']}-{ctx['target']}"
    c1, c2, c3 = st.columns(3)
    c1.download_button("Figure (PNG)", png, f"{stem}.png", "image/png")
    # Packed eagerly (a few ms): Streamlit's deferred (callable) downloads can be dropped by
    # a rerun while the page still shows the old button, and then the download never comes.
    c2.download_button("Arrays (NPZ)", pipeline.explanation_npz(e), f"{stem}.npz",
                       "application/octet-stream")
    c3.download_button("Scores (JSON)", pipeline.explanation_json(e), f"{stem}.json",
                       "application/json")


def neighbour_panel(ctx: dict[str, Any], item: dict[str, Any]) -> None:
    pair = ctx["pair"]
    if pair is None or ctx["modality"] not in pair.modalities:
        return
    st.subheader("Nearest neighbours: raw content vs adapted representation")
    try:
        spaces = neighbours(ctx["root"], pair.main, item["item_id"], ctx["modality"], 5)
    except BefaVizError as e:
        show_error(e)
        return
    for col, (space, table) in zip(st.columns(len(spaces)), spaces.items(), strict=True):
        col.markdown(f"**{space}**")
        for row in table.itertuples():
            col.button(f"{row.item_id} · {row.title} ({row.cosine:.2f})",
                       key=f"nn-{space}-{row.item_id}", on_click=open_item,
                       args=(row.item_id,))


def item_view(ctx: dict[str, Any]) -> None:
    item_id = pick_item(ctx)
    if item_id is None:
        return
    try:
        item = pipeline.item_details(ctx["ds"], item_id)
    except BefaVizError as e:
        show_error(e)
        return
    item_header(ctx, item)
    explanation_panel(ctx, item)
    neighbour_panel(ctx, item)


# ---- user view -------------------------------------------------------------------------------
def user_view(ctx: dict[str, Any]) -> None:
    ds, pair = ctx["ds"], ctx["pair"]
    users = ds.user_ids
    if st.session_state.get("user") not in users:
        st.session_state["user"] = users[0]
    user = st.selectbox("User", users, key="user")
    if "k" not in st.session_state:
        st.session_state["k"] = 10
    k = st.slider("Recommendations", 1, min(50, ds.n_items), key="k")
    hist = pipeline.user_history(ds, user)
    st.subheader(f"User {user}: {len(hist)} interactions")
    st.dataframe(hist, hide_index=True, width="content")
    if pair is None:
        st.info(f"Dataset {ctx['dataset']!r} has no trained run, so there are no "
                "recommendations yet. Train one with `befa-viz train`.")
        return
    try:
        recs = recommendations(ctx["root"], pair.main, user, k)
    except BefaVizError as e:
        show_error(e)
        return
    st.subheader(f"Top {k} (training items masked)")
    if not pair.paired:
        st.warning(f"Run {pair.main} has no paired run, so only one list is shown.")
    for col, (variant, table) in zip(st.columns(len(recs)), recs.items(), strict=True):
        col.markdown(f"**{variant} adapter**")
        for row in table.itertuples():
            hit = f" ✓ {row.held_out}" if row.held_out else ""
            c_text, c_button = col.columns([4, 1])
            c_text.markdown(f"{row.rank}. `{row.item_id}` {row.title}{hit} · {row.score:.3f}")
            c_button.button("Explain", key=f"rec-{variant}-{row.item_id}", on_click=open_item,
                            args=(row.item_id,), kwargs={"user": user},
                            disabled=not pair.modalities,
                            help=f"Explain why {row.item_id} is scored for user {user}.")


# ---- dataset view ----------------------------------------------------------------------------
def dataset_view(ctx: dict[str, Any]) -> None:
    stats = pipeline.dataset_stats(ctx["dataset"], workspace=ctx["ws"])
    st.header(f"Dataset {ctx['dataset']}")
    cols = st.columns(4)
    for col, (label, key) in zip(cols, (("users", "users"), ("items", "items"),
                                        ("interactions", "interactions"),
                                        ("items with image", "items_with_image")), strict=True):
        col.metric(label, f"{stats[key]:,}")
    st.subheader("Ranking quality without vs with the adapter (test, mean over seeds)")
    table = adapter_metrics(ctx["root"], ctx["dataset"])
    if table.empty:
        st.info("No complete run yet. Train with `befa-viz train` or `befa-viz compare`.")
    else:
        st.dataframe(table, hide_index=True)
    pair = ctx["pair"]
    st.subheader("Drift and omission over items")
    if pair is None or ctx["modality"] not in pair.modalities:
        st.info("Pick a multimodal run to score items.")
        return
    if ctx["target"] == "user_score":
        st.info("Dataset-level scores need an item-level target; pick content_score.")
        return
    pool = stats["items"] if ctx["modality"] == "text" else stats["items_with_image"]
    if pool == 0:
        st.info(f"No item of dataset {ctx['dataset']!r} has {ctx['modality']} content.")
        return
    if "n_items" not in st.session_state:
        st.session_state["n_items"] = min(24, pool)
    n_items = st.number_input("Items to score (evenly spaced)", 1, pool, key="n_items")
    params = (ctx["root"], pair.main, ctx["modality"], ctx["method"], ctx["target"],
              ctx["n_steps"], int(n_items))
    scores = st.session_state.get("_scores", {})
    if params not in scores:
        st.caption(f"Scores {int(n_items)} items with {ctx['method']}: maps come from the "
                   "attribution cache, missing ones are computed (a few seconds each).")
        if not st.button("Compute scores", type="primary"):
            return
        bar = st.progress(0.0, text="Scoring items…")
        try:
            table = pipeline.score_table(
                workspace=ctx["root"], run=pair.main, modality=ctx["modality"],
                target=ctx["target"], method=ctx["method"], n_steps=ctx["n_steps"],
                limit=int(n_items),
                on_progress=lambda d, n: bar.progress(d / n, text=f"Scored {d} of {n} items"))
        except BefaVizError as e:
            show_error(e)
            return
        bar.empty()
        scores[params] = table
        st.session_state["_scores"] = scores
    table = scores[params]
    st.pyplot(pipeline.score_histogram_figure(table), width="content")
    st.markdown("**Most drifting items** (click to open)")
    for row in pipeline.worst_items(table, n=10).itertuples(index=False):
        vals = " · ".join(f"{c.replace('_', ' ')} {getattr(row, c):.2f}"
                          for c in row._fields if c.startswith("drift_"))
        st.button(f"{row.item_id} · {row.title} — {vals}", key=f"worst-{row.item_id}",
                  on_click=open_item, args=(row.item_id,))


# ---- page ------------------------------------------------------------------------------------
def main() -> None:
    st.set_page_config(page_title="befa-viz explorer", layout="wide")
    keep_state()
    ctx = sidebar()
    if ctx is None:
        return
    view = st.session_state.get("view", "Item")
    if view == "User":
        user_view(ctx)
    elif view == "Dataset":
        dataset_view(ctx)
    else:
        item_view(ctx)


main()
