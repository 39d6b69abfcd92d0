/*
 * intersect.h: closest-hit traversal of the BVH4 and the primitive tests.
 */
#ifndef CPN_RENDER_INTERSECT_H
#define CPN_RENDER_INTERSECT_H

#include "compat.h"
#include "types.h"

typedef struct cpn_hit {
    float t;
    cpn_u32 prim;
} cpn_hit;

CPN_DEVICE float cpn_safe_inverse(float d) {
    if (cpn_fabsf(d) < 1e-20f) return d < 0.0f ? -1e20f : 1e20f;
    return 1.0f / d;
}

/* Möller–Trumbore with precomputed edges; returns t, or CPN_INF for a miss. */
CPN_DEVICE float cpn_intersect_triangle(CPN_GLOBAL const cpn_prim* p, cpn_vec3 o, cpn_vec3 d, float tmin) {
    const cpn_vec3 e1 = v3_load(p->e1), e2 = v3_load(p->e2);
    const cpn_vec3 pv = v3_cross(d, e2);
    const float det = v3_dot(e1, pv);
    if (cpn_fabsf(det) < 1e-12f) return CPN_INF;
    const float inv = 1.0f / det;
    const cpn_vec3 s = v3_sub(o, v3_load(p->v0));
    const float u = v3_dot(s, pv) * inv;
    if (u < 0.0f || u > 1.0f) return CPN_INF;
    const cpn_vec3 q = v3_cross(s, e1);
    const float v = v3_dot(d, q) * inv;
    if (v < 0.0f || u + v > 1.0f) return CPN_INF;
    const float t = v3_dot(e2, q) * inv;
    return t > tmin ? t : CPN_INF;
}

/* d is a unit vector. */
CPN_DEVICE float cpn_intersect_sphere(CPN_GLOBAL const cpn_prim* p, cpn_vec3 o, cpn_vec3 d, float tmin) {
    const float r = p->e1[0];
    const cpn_vec3 oc = v3_sub(o, v3_load(p->v0));
    const float b = v3_dot(oc, d);
    const float c = v3_dot(oc, oc) - r * r;
    const float disc = b * b - c;
    if (disc < 0.0f) return CPN_INF;
    const float sq = cpn_sqrtf(disc);
    float t = -b - sq;
    if (t > tmin) return t;
    t = -b + sq;
    return t > tmin ? t : CPN_INF;
}

CPN_DEVICE float cpn_intersect_prim(CPN_GLOBAL const cpn_prim* p, cpn_vec3 o, cpn_vec3 d, float tmin) {
    return p->type == CPN_PRIM_SPHERE ? cpn_intersect_sphere(p, o, d, tmin) : cpn_intersect_triangle(p, o, d, tmin);
}

/* Where the ray (origin o = oi / inv, inverse direction inv) enters each of a node's four boxes
 * within [tmin, tmax], or CPN_INF where it misses: four slab tests in one loop over the SoA
 * boxes, which the CPU build vectorises. */
CPN_DEVICE void cpn_node_entries(CPN_GLOBAL const cpn_bvh4_node* n, cpn_vec3 inv, cpn_vec3 oi, float tmin, float tmax,
                                 float tn[4]) {
    for (int i = 0; i < 4; ++i) {
        const float tx0 = n->bmin_x[i] * inv.x - oi.x, tx1 = n->bmax_x[i] * inv.x - oi.x;
        const float ty0 = n->bmin_y[i] * inv.y - oi.y, ty1 = n->bmax_y[i] * inv.y - oi.y;
        const float tz0 = n->bmin_z[i] * inv.z - oi.z, tz1 = n->bmax_z[i] * inv.z - oi.z;
        const float lo = cpn_max(cpn_max(cpn_min(tx0, tx1), cpn_min(ty0, ty1)), cpn_max(cpn_min(tz0, tz1), tmin));
        const float hi = cpn_min(cpn_min(cpn_max(tx0, tx1), cpn_max(ty0, ty1)), cpn_min(cpn_max(tz0, tz1), tmax));
        tn[i] = lo <= hi ? lo : CPN_INF;
    }
}

/* The nearest hit in (tmin, tmax); returns 1 and fills *hit, or 0. */
CPN_DEVICE int cpn_intersect_scene(CPN_GLOBAL const cpn_bvh4_node* nodes, cpn_u32 node_count,
                                   CPN_GLOBAL const cpn_prim* prims, cpn_vec3 o, cpn_vec3 d, float tmin,
                                   float tmax, cpn_hit* hit) {
    if (node_count == 0u) return 0;
    const cpn_vec3 inv = v3(cpn_safe_inverse(d.x), cpn_safe_inverse(d.y), cpn_safe_inverse(d.z));
    const cpn_vec3 oi = v3(o.x * inv.x, o.y * inv.y, o.z * inv.z);
    cpn_u32 stack[CPN_TRAVERSAL_STACK];
    float stack_t[CPN_TRAVERSAL_STACK];
    int sp = 0;
    stack[sp] = 0u;
    stack_t[sp] = 0.0f;
    sp++;
    float best = tmax;
    cpn_u32 best_prim = 0xffffffffu;
    while (sp > 0) {
        sp--;
        if (stack_t[sp] > best) continue;
        const cpn_u32 item = stack[sp];
        if (item & CPN_LEAF_FLAG) {
            const cpn_u32 first = item & CPN_LEAF_MAX_FIRST;
            const cpn_u32 count = ((item >> 27) & 15u) + 1u;
            for (cpn_u32 i = 0u; i < count; ++i) {
                const float t = cpn_intersect_prim(&prims[first + i], o, d, tmin);
                if (t < best) {
                    best = t;
                    best_prim = first + i;
                }
            }
            continue;
        }
        CPN_GLOBAL const cpn_bvh4_node* n = &nodes[item];
        float tn[4];
        cpn_node_entries(n, inv, oi, tmin, best, tn);
        /* push the hit children far to near, so the nearest is popped first */
        int order[4];
        int k = 0;
        for (int i = 0; i < 4; ++i) {
            if (tn[i] >= CPN_INF || n->child[i] == CPN_EMPTY_CHILD) continue;
            int j = k;
            while (j > 0 && tn[order[j - 1]] < tn[i]) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = i;
            k++;
        }
        for (int j = 0; j < k && sp < CPN_TRAVERSAL_STACK; ++j) {
            stack[sp] = n->child[order[j]];
            stack_t[sp] = tn[order[j]];
            sp++;
        }
    }
    if (best_prim == 0xffffffffu) return 0;
    hit->t = best;
    hit->prim = best_prim;
    return 1;
}

/* Whether anything lies on the segment (tmin, tmax): a shadow ray. Stops at the first hit, in
 * any order (no nearest-first sorting is needed). */
CPN_DEVICE int cpn_occluded_scene(CPN_GLOBAL const cpn_bvh4_node* nodes, cpn_u32 node_count,
                                  CPN_GLOBAL const cpn_prim* prims, cpn_vec3 o, cpn_vec3 d, float tmin, float tmax) {
    if (node_count == 0u) return 0;
    const cpn_vec3 inv = v3(cpn_safe_inverse(d.x), cpn_safe_inverse(d.y), cpn_safe_inverse(d.z));
    const cpn_vec3 oi = v3(o.x * inv.x, o.y * inv.y, o.z * inv.z);
    cpn_u32 stack[CPN_TRAVERSAL_STACK];
    int sp = 0;
    stack[sp++] = 0u;
    while (sp > 0) {
        const cpn_u32 item = stack[--sp];
        if (item & CPN_LEAF_FLAG) {
            const cpn_u32 first = item & CPN_LEAF_MAX_FIRST;
            const cpn_u32 count = ((item >> 27) & 15u) + 1u;
            for (cpn_u32 i = 0u; i < count; ++i)
                if (cpn_intersect_prim(&prims[first + i], o, d, tmin) < tmax) return 1;
            continue;
        }
        CPN_GLOBAL const cpn_bvh4_node* n = &nodes[item];
        float tn[4];
        cpn_node_entries(n, inv, oi, tmin, tmax, tn);
        for (int i = 0; i < 4 && sp < CPN_TRAVERSAL_STACK; ++i)
            if (tn[i] < CPN_INF && n->child[i] != CPN_EMPTY_CHILD) stack[sp++] = n->child[i];
    }
    return 0;
}

#endif /* CPN_RENDER_INTERSECT_H */
