"""befa-viz explorer: items, users, datasets and the item space, with and without BeFA.

Run with::

    streamlit run apps/explorer.py -- --workspace befa-workspace

The workspace is the ``--workspace`` argument, else ``$BEFA_VIZ_WORKSPACE``, else
``./befa-workspace``. This file holds widgets, ``pipeline``/``explore``/``viz`` calls and layout
only; everything else lives in :mod:`befa_viz.pipeline` and :mod:`befa_viz.explore`.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
import time
from typing import Any

import pandas as pd
import streamlit as st
from PIL import Image

from befa_viz import BefaVizError, explore, pipeline, viz
from befa_viz.pipeline import Workspace
from befa_viz.workspace import WORKSPACE_ENV

VIEWS = ("Item", "User", "Dataset", "Item space")
#: Choices that survive switching views (Streamlit drops the state of widgets not drawn).
PERSISTENT = ("view", "dataset", "pair", "item_id", "modality", "method", "target", "n_steps",
              "compare", "sanity", "user", "k", "n_items", "difference", "show_masks",
              "colour_by")
#: Seconds between progress updates of a background scoring job.
POLL_S = 1.0


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
        st.session_state["_user_score_item"] = item_id
    elif st.session_state.get("target") == "user_score":
        st.session_state["target"] = explore.target_names()[0]


def target_changed() -> None:
    """Target callback: ``user_score`` picked by hand applies to the item shown now."""
    if st.session_state.get("target") == "user_score":
        st.session_state["_user_score_item"] = st.session_state.get("item_id")


def drop_stale_user_score() -> None:
    """``user_score`` explains one (user, item) pair: once another item is shown (search,
    picker, link), the target goes back to the default instead of sticking."""
    if (st.session_state.get("target") == "user_score"
            and st.session_state.get("item_id") != st.session_state.get("_user_score_item")):
        st.session_state["target"] = explore.target_names()[0]


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
    return explore.run_pairs(root, dataset)


@st.cache_resource(show_spinner=False, ttl=600)
def open_runs(root: str, run: str) -> dict[str, Any]:
    return explore.open_run_pair(root, run)


@st.cache_data(show_spinner=False, max_entries=64)
def _default_recipe(root: str, run: str, modality: str, stamp: float) -> Any:
    return pipeline.default_recipe(root, run, modality)


def default_recipe(root: str, run: str, modality: str) -> Any:
    """The evidence-chosen recipe; recomputed when a benchmark rewrites the workspace's file."""
    path = pipeline.workspace_defaults_path(root)
    return _default_recipe(root, run, modality, path.stat().st_mtime if path.exists() else 0.0)


@st.cache_data(show_spinner=False, max_entries=512)
def explain(root: str, run: str, item_id: str, modality: str, method: str, target: str,
            n_steps: int, user: str | None, compare: bool, sanity: bool) -> Any:
    return pipeline.explain_item(item_id, workspace=root, run=run, modality=modality,
                                 target=target, method=method, n_steps=n_steps, user=user,
                                 compare_adapter=compare, sanity=sanity)


@st.cache_data(show_spinner=False, max_entries=512)
def heatmap_png(_explanation: Any, key: tuple[Any, ...], difference: bool = False) -> bytes:
    return explore.explanation_png(_explanation, dpi=90, difference=difference)


@st.cache_data(show_spinner=False, max_entries=4096)
def thumbnails(root: str, dataset: str, item_ids: tuple[str, ...]) -> list[str | None]:
    return explore.item_thumbnails(load_dataset(root, dataset), list(item_ids), size=48)


@st.cache_data(show_spinner=False, max_entries=64)
def item_space(root: str, run: str, modality: str) -> Any:
    return explore.item_space(open_runs(root, run), modality=modality, workspace=root)


@st.cache_data(show_spinner=False, max_entries=256)
def neighbours(root: str, run: str, item_id: str, modality: str, k: int) -> dict[str, Any]:
    return explore.nearest_items(open_runs(root, run), item_id, modality=modality, k=k)


@st.cache_data(show_spinner=False, max_entries=256)
def recommendations(root: str, run: str, user: str, k: int) -> dict[str, Any]:
    return explore.recommend(open_runs(root, run), user, k=k)


@st.cache_data(show_spinner=False, ttl=30)
def adapter_metrics(root: str, dataset: str) -> Any:
    return explore.adapter_metrics(root, dataset)


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
        sb.caption(f"{pair.model.upper()}, seed {pair.seed}, content: "
                   f"{' + '.join(pair.modalities) or 'none (ID only)'}  \n"
                   "Without adapter: " + (f"`{pair.without}`" if pair.without else "—")
                   + "  \nWith adapter: " + (f"`{pair.with_}`" if pair.with_ else "—"))

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
    methods = explore.method_names(modality)
    recipe = None
    if pair is not None and modality in pair.modalities:
        # the evidence-chosen default of the run's encoder (what `befa-viz heatmap` uses)
        recipe = default_recipe(str(ws.root), pair.main, modality)
    if st.session_state.get("method") not in methods:
        chosen = recipe.method if recipe is not None else "ig"
        st.session_state["method"] = chosen if chosen in methods else methods[0]
    method = sb.selectbox("Method", methods, key="method")
    if recipe is not None:
        sb.caption(f"Default for this encoder: **{recipe.method}** — "
                   + ("passes its controls" if recipe.passes else "did not pass its controls")
                   + f" on the benchmark ({recipe.source}).")
    user = st.session_state.get("user")
    targets = explore.target_names(with_user=user is not None)
    if st.session_state.get("target") not in targets:
        st.session_state["target"] = targets[0]
    target = sb.selectbox("Target", targets, key="target", on_change=target_changed,
                          help="content_score: the content pathway's score for the item's "
                               "users (comparable without and with the adapter). user_score: "
                               f"the score for user {user or '(pick one in the User view)'}.")
    if "n_steps" not in st.session_state:
        st.session_state["n_steps"] = 16
    takes_steps = explore.steps_apply(method)
    n_steps = sb.number_input("Steps", min_value=1, max_value=256, step=8, key="n_steps",
                              disabled=not takes_steps,
                              help="Integration steps of path methods (IG)." if takes_steps
                              else f"{method} takes no integration steps.")
    paired = pair is not None and pair.paired
    if "compare" not in st.session_state:
        st.session_state["compare"] = True
    compare = sb.checkbox("Compare without vs with adapter", key="compare",
                          disabled=not paired) and paired
    sanity = sb.checkbox("Sanity controls (slower)", key="sanity",
                         help="Model-randomisation, random-target and input-only controls.")
    return {"root": str(ws.root), "ws": ws, "dataset": dataset, "ds": ds, "pairs": pairs,
            "pair": pair, "has_images": has_images, "modality": modality, "method": method,
            "target": target, "n_steps": int(n_steps), "takes_steps": takes_steps,
            "compare": compare, "sanity": sanity,
            "user": user if target == "user_score" else None}


# ---- item view -------------------------------------------------------------------------------
def pick_item(ctx: dict[str, Any]) -> str | None:
    ds = ctx["ds"]
    query = st.text_input("Search items by original id or title", key="search",
                          placeholder="e.g. an item id, or words of its title")
    matches = explore.search_items(ds, query, limit=50)
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
            titles[current] = explore.item_details(ds, current)["title"]
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
    try:
        masks = explore.item_masks(ctx["ds"], item["item_id"])
    except BefaVizError as e:
        show_error(e)
        masks = {}
    with left:
        if item["image_path"]:
            show = bool(masks) and st.toggle(
                "Ground-truth masks", key="show_masks",
                help="Overlay the dataset's ground-truth regions (e.g. the product, props, "
                     "decoy) on the image.")
            if show:
                with Image.open(item["image_path"]) as im:
                    st.image(explore.mask_overlay(im, masks), width=220,
                             caption="item image with ground-truth masks")
                st.html(" ".join(
                    f'<span style="display:inline-block;width:0.8em;height:0.8em;'
                    f'background:rgb{explore.mask_colour(n, k)};margin-right:0.2em"></span>'
                    f'{html.escape(n)}' for k, n in enumerate(masks)))
            else:
                st.image(item["image_path"], caption="item image", width=220)
        elif not ctx["has_images"]:
            st.info(f"Dataset {ctx['dataset']!r} has no images: only text can be explained.")
        else:
            st.info("This item has no image.")
    with right:
        if item["text"]:
            st.markdown(f"> {item['text']}")
        attrs = explore.item_attributes(ctx["ds"], item["item_id"])
        st.markdown("**Attributes**")
        st.table(pd.DataFrame({"value": [str(v) for v in attrs.values()]}, index=list(attrs)))


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
    what = (f"{ctx['method']} ({ctx['n_steps']} steps)" if ctx["takes_steps"]
            else ctx["method"])
    both = ctx["compare"] and ctx["modality"] == "image"
    if both and "difference" not in st.session_state:
        st.session_state["difference"] = True
    difference = both and st.toggle(
        "Difference panel (with − without)", key="difference",
        help="A third panel: the map with the adapter minus the map without, on the pair's "
             "shared scale (red: more evidence with the adapter).")
    with st.spinner(f"Computing {what} heatmaps of item {item['item_id']}: read from the "
                    "attribution cache when present, else computed and cached (a few seconds "
                    "per map)…"):
        try:
            e = explain(*args)
        except BefaVizError as err:
            show_error(err)
            return
        png = heatmap_png(e, args, difference)
    src = "from the attribution cache" if all(e.cached.values()) else "computed now, now cached"
    for_user = f" for user {ctx['user']}" if ctx["user"] else ""
    st.subheader(f"Heatmaps: {ctx['target']}{for_user}, {what}")
    if ctx["modality"] == "image":
        extra = "; the third panel is with − without" if difference else ""
        st.image(png, caption=f"Without vs with adapter on one shared colour scale{extra} "
                              f"({src}).")
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
    c2.download_button("Arrays (NPZ)", explore.explanation_npz(e), f"{stem}.npz",
                       "application/octet-stream")
    c3.download_button("Scores (JSON)", explore.explanation_json(e), f"{stem}.json",
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
    if ctx["target"] == "user_score" and item_id != st.session_state.get("_user_score_item"):
        st.rerun()  # another item than the one explained for the user: main() resets it
    try:
        item = explore.item_details(ctx["ds"], item_id)
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
    hist = explore.user_history(ds, user)
    st.subheader(f"User {user}: {len(hist)} interactions")
    if ctx["has_images"]:
        hist.insert(0, "image", thumbnails(ctx["root"], ctx["dataset"],
                                           tuple(hist["item_id"])))
    st.dataframe(hist, hide_index=True, width="content", row_height=52,
                 column_config={"image": st.column_config.ImageColumn("image", width="small")})
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
        thumbs = (thumbnails(ctx["root"], ctx["dataset"], tuple(table["item_id"]))
                  if ctx["has_images"] else [None] * len(table))
        for row, thumb in zip(table.itertuples(), thumbs, strict=True):
            hit = f" ✓ {row.held_out}" if row.held_out else ""
            c_img, c_text, c_button = col.columns([1, 5, 2], vertical_alignment="center")
            if thumb is not None:
                c_img.image(thumb, width=48)
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
    scores = st.session_state.setdefault("_scores", {})
    if params not in scores:
        job = current_job(params)
        running = job is not None and not job.done
        # the fragment polls the background job and reruns alone; the page stays usable
        st.fragment(run_every=POLL_S if running else None, key="scores")(score_progress)(
            ctx, params)
        if params not in scores:
            return
    table = scores[params]
    st.pyplot(explore.score_histogram_figure(table), width="content")
    if {"drift_without", "drift_with"} <= set(table.columns):
        st.markdown("**Paired: the same items with vs without the adapter**")
        st.pyplot(explore.paired_scatter_figure(table), width="content")
        tests = {r["score"]: r for r in (explore.paired_test(table, sc)
                                         for sc in ("drift", "omission"))}
        st.dataframe(pd.DataFrame(tests).T[["n", "mean_without", "mean_with", "mean_diff",
                                            "n_lower", "n_higher", "p"]], width="content")
        st.caption("Wilcoxon signed-rank test (two-sided) on the per-item differences with − "
                   "without. Points below the diagonal: the score dropped with the adapter. "
                   "Only meaningful where the method passes its sanity controls.")
    st.markdown("**Most drifting items** (click to open)")
    for row in explore.worst_items(table, n=10).itertuples(index=False):
        vals = " · ".join(f"{c.replace('_', ' ')} {getattr(row, c):.2f}"
                          for c in row._fields if c.startswith("drift_"))
        st.button(f"{row.item_id} · {row.title} — {vals}", key=f"worst-{row.item_id}",
                  on_click=open_item, args=(row.item_id,))


def current_job(params: tuple[Any, ...]) -> Any:
    """The session's background scoring job if it is for ``params``, else ``None``."""
    held = st.session_state.get("_score_job")
    return held[1] if held is not None and held[0] == params else None


def score_progress(ctx: dict[str, Any], params: tuple[Any, ...]) -> None:
    """Start, follow or cancel the background scoring of ``params`` (runs as a fragment)."""
    scores = st.session_state["_scores"]
    job = current_job(params)
    if job is not None and job.done:
        st.session_state.pop("_score_job")
        if job.error is not None:
            if isinstance(job.error, BefaVizError):
                show_error(job.error)
                return
            raise job.error
        done, total = job.progress
        if job.cancelled and done < total:
            st.session_state["_cancelled"] = (params, done, total)
        else:
            scores[params] = job.result
            st.rerun()  # the whole page: the results are drawn outside the fragment
    if job is not None and not job.done:
        done, total = job.progress
        st.progress(done / max(total, 1), text=f"Scoring items in the background: {done} of "
                                               f"{total} (the other views stay usable)")
        if st.button("Cancel", key="cancel_scores",
                     help="Stop after the batch in flight; its maps stay cached."):
            job.cancel()
            st.caption("Cancelling after the batch in flight…")
        return
    cancelled = st.session_state.get("_cancelled")
    if cancelled is not None and cancelled[0] == params:
        st.info(f"Cancelled after {cancelled[1]} of {cancelled[2]} items. Their maps are "
                "cached: computing again resumes from there.")
    n_items = params[-1]
    st.caption(f"Scores {n_items} items with {ctx['method']}: maps come from the attribution "
               "cache, missing ones are computed in the background (a few seconds each).")
    if st.button("Compute scores", type="primary", key="compute_scores"):
        old = st.session_state.get("_score_job")
        if old is not None and not old[1].done:
            old[1].cancel()  # one job per session: the new request replaces the old one
        job = explore.ScoreJob(
            workspace=ctx["root"], run=params[1], modality=ctx["modality"],
            target=ctx["target"], method=ctx["method"], n_steps=ctx["n_steps"],
            limit=int(n_items), batch_size=2)
        st.session_state["_score_job"] = (params, job)
        st.session_state.pop("_cancelled", None)
        time.sleep(0.2)  # a first batch of cached maps is often done by now
        st.rerun()  # the whole page, so that the fragment polls


# ---- item space ------------------------------------------------------------------------------
def pick_from_space(key: str) -> None:
    """Chart callback: open the clicked item."""
    state = st.session_state.get(key)
    points = (state or {}).get("selection", {}).get("pick", []) if state else []
    if points:
        open_item(str(points[0]["item_id"]))


def space_view(ctx: dict[str, Any]) -> None:
    import altair as alt

    pair = ctx["pair"]
    st.header(f"Item space of {ctx['dataset']}")
    if pair is None or ctx["modality"] not in pair.modalities:
        st.info("Pick a multimodal run: the map shows its items' content representations.")
        return
    with st.spinner("Embedding the items with UMAP (cached in the workspace; the first map "
                    "of a session also compiles UMAP's numba code, ~20 s)…"):
        try:
            df = item_space(ctx["root"], pair.main, ctx["modality"])
        except BefaVizError as e:
            show_error(e)
            return
    df = df.copy()
    options = ["popularity"] + [c.removeprefix("attr:") for c in df.columns
                                if c.startswith("attr:")]
    scored = {k: t for k, t in st.session_state.get("_scores", {}).items()
              if k[1] == pair.main and k[2] == ctx["modality"]}
    if scored:
        table = next(reversed(scored.values()))
        for v in ("without", "with"):
            if f"drift_{v}" in table.columns:
                df[f"drift {v}"] = df["item_id"].map(dict(zip(table["item_id"],
                                                              table[f"drift_{v}"],
                                                              strict=True)))
        options += ["drift"]
    if st.session_state.get("colour_by") not in options:
        st.session_state["colour_by"] = options[0]
    colour_by = st.selectbox("Colour by", options, key="colour_by",
                             help="drift: the items scored in the Dataset view (others grey).")
    variants = [v for v in ("without", "with") if f"x_{v}" in df.columns]
    st.caption(f"{len(df)} items; {ctx['modality']} content representation of each run "
               "(without: the projected feature ċ; with: g(ċ) ⊙ e), cosine UMAP; the map with "
               "the adapter is rotated onto the one without. Click a point to open the item.")
    for col, v in zip(st.columns(len(variants)), variants, strict=True):
        data = df.rename(columns={f"x_{v}": "x", f"y_{v}": "y"})
        if colour_by == "popularity":
            colour = alt.Color("popularity:Q", scale=alt.Scale(type="symlog",
                                                                scheme="viridis"))
        elif colour_by == "drift":  # items not scored (no drift value) in grey
            colour = alt.condition(
                f"isValid(datum['drift {v}'])",
                alt.Color(f"drift {v}:Q", title=f"drift {v}",
                          scale=alt.Scale(domain=[0, 1], scheme="magma", reverse=True)),
                alt.value("#cccccc"))
        else:
            data = data.rename(columns={f"attr:{colour_by}": colour_by})
            colour = alt.Color(f"{colour_by}:N")
        pick = alt.selection_point(name="pick", fields=["item_id"], on="click")
        chart = (alt.Chart(data[[c for c in data.columns if not c.startswith("attr:")]])
                 .mark_circle(size=40, opacity=0.8)
                 .encode(x=alt.X("x:Q", axis=None, scale=alt.Scale(zero=False)),
                         y=alt.Y("y:Q", axis=None, scale=alt.Scale(zero=False)), color=colour,
                         tooltip=["item_id", "title", "popularity"])
                 .add_params(pick).properties(title=f"{v} adapter", height=420))
        with col:
            st.altair_chart(chart, key=f"space-{v}", on_select=lambda k=f"space-{v}":
                            pick_from_space(k), selection_mode="pick")


# ---- page ------------------------------------------------------------------------------------
def main() -> None:
    st.set_page_config(page_title="befa-viz explorer", layout="wide")
    keep_state()
    drop_stale_user_score()  # before the sidebar draws the target picker
    ctx = sidebar()
    if ctx is None:
        return
    view = st.session_state.get("view", "Item")
    if view == "User":
        user_view(ctx)
    elif view == "Dataset":
        dataset_view(ctx)
    elif view == "Item space":
        space_view(ctx)
    else:
        item_view(ctx)


main()
