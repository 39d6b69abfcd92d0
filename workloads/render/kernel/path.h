/*
 * path.h: one camera sample, traced as a path: camera ray (thin lens), closest hit, material
 * scattering (diffuse, metal with roughness, dielectric, emissive), Russian roulette, and the
 * environment (constant colour or equirectangular image). Unidirectional path tracing with
 * next-event estimation at diffuse surfaces: a point on an emissive primitive (chosen by its
 * share of the emitted power) is sampled and tested with a shadow ray, and combined with the
 * material's own sample by multiple importance sampling (power heuristic), so small lights
 * converge quickly. Specular surfaces (metal, glass) and the environment are reached by the
 * material's sample alone. No material returns more than it receives (albedo <= 1 is enforced
 * on the host), so the estimator conserves energy.
 */
#ifndef CPN_RENDER_PATH_H
#define CPN_RENDER_PATH_H

#include "compat.h"
#include "intersect.h"
#include "rng.h"
#include "types.h"

typedef struct cpn_scene_view {
    CPN_GLOBAL const cpn_scene_header* header;
    CPN_GLOBAL const cpn_bvh4_node* nodes;
    CPN_GLOBAL const cpn_prim* prims;
    CPN_GLOBAL const cpn_material* materials;
    CPN_GLOBAL const float* env;
    CPN_GLOBAL const cpn_light* lights;
} cpn_scene_view;

/* The light whose cdf interval holds u (binary search). */
CPN_DEVICE cpn_u32 cpn_pick_light(CPN_GLOBAL const cpn_light* lights, cpn_u32 count, float u) {
    cpn_u32 lo = 0u, hi = count - 1u;
    while (lo < hi) {
        const cpn_u32 mid = (lo + hi) / 2u;
        if (u < lights[mid].cdf) hi = mid;
        else lo = mid + 1u;
    }
    return lo;
}

/* A uniformly distributed point on a primitive's surface and the unit normal there. */
CPN_DEVICE cpn_vec3 cpn_sample_surface(CPN_GLOBAL const cpn_prim* p, float r1, float r2, cpn_vec3* normal) {
    if (p->type == CPN_PRIM_SPHERE) {
        const float z = 1.0f - 2.0f * r1;
        const float rr = cpn_sqrtf(cpn_max(0.0f, 1.0f - z * z));
        const float phi = 2.0f * CPN_PI * r2;
        const cpn_vec3 n = v3(rr * cpn_cosf(phi), rr * cpn_sinf(phi), z);
        *normal = n;
        return v3_add(v3_load(p->v0), v3_scale(n, p->e1[0]));
    }
    const float su = cpn_sqrtf(r1);
    const float b1 = 1.0f - su, b2 = r2 * su;
    *normal = v3_load(p->n);
    return v3_add(v3_load(p->v0), v3_add(v3_scale(v3_load(p->e1), b1), v3_scale(v3_load(p->e2), b2)));
}

/* The power heuristic's weight of the strategy with density a against b. */
CPN_DEVICE float cpn_mis(float a, float b) {
    const float a2 = a * a, b2 = b * b;
    return a2 + b2 > 0.0f ? a2 / (a2 + b2) : 0.0f;
}

CPN_DEVICE cpn_vec3 cpn_environment(const cpn_scene_view* s, cpn_vec3 d) {
    CPN_GLOBAL const cpn_scene_header* h = s->header;
    const cpn_vec3 c = v3_scale(v3_load(h->env_color), h->env_intensity);
    if (h->env_width == 0u || h->env_height == 0u) return c;
    /* equirectangular: u from the azimuth about +y (turned by env_rotation), v from the pole */
    float phi = cpn_atan2f(d.x, -d.z) + h->env_rotation;
    float u = phi * (0.5f / CPN_PI) + 0.5f;
    u = u - cpn_floorf(u);
    const float cy = cpn_min(1.0f, cpn_max(-1.0f, d.y));
    const float v = cpn_acosf(cy) * (1.0f / CPN_PI);
    cpn_u32 px = (cpn_u32)(u * (float)h->env_width);
    cpn_u32 py = (cpn_u32)(v * (float)h->env_height);
    if (px >= h->env_width) px = h->env_width - 1u;
    if (py >= h->env_height) py = h->env_height - 1u;
    CPN_GLOBAL const float* texel = s->env + ((size_t)py * h->env_width + px) * 3u;
    return v3_scale(v3(texel[0], texel[1], texel[2]), h->env_intensity);
}

/* A basis around unit n, and a cosine-weighted direction in its hemisphere. */
CPN_DEVICE cpn_vec3 cpn_cosine_direction(cpn_vec3 n, float r1, float r2) {
    const float sign = n.z >= 0.0f ? 1.0f : -1.0f;
    const float a = -1.0f / (sign + n.z);
    const float b = n.x * n.y * a;
    const cpn_vec3 t = v3(1.0f + sign * n.x * n.x * a, sign * b, -sign * n.x);
    const cpn_vec3 bt = v3(b, sign + n.y * n.y * a, -n.y);
    const float phi = 2.0f * CPN_PI * r1;
    const float r = cpn_sqrtf(r2);
    const float z = cpn_sqrtf(cpn_max(0.0f, 1.0f - r2));
    return v3_normalize(v3_add(v3_add(v3_scale(t, r * cpn_cosf(phi)), v3_scale(bt, r * cpn_sinf(phi))), v3_scale(n, z)));
}

CPN_DEVICE cpn_vec3 cpn_in_unit_sphere(cpn_rng* rng) {
    /* uniform in the ball without rejection: direction from two numbers, radius from a cube root */
    const float z = 1.0f - 2.0f * cpn_rng_next(rng);
    const float phi = 2.0f * CPN_PI * cpn_rng_next(rng);
    const float rr = cpn_sqrtf(cpn_max(0.0f, 1.0f - z * z));
    const float radius = cpn_powf(cpn_rng_next(rng), 1.0f / 3.0f);
    return v3_scale(v3(rr * cpn_cosf(phi), rr * cpn_sinf(phi), z), radius);
}

CPN_DEVICE cpn_vec3 cpn_reflect(cpn_vec3 d, cpn_vec3 n) { return v3_sub(d, v3_scale(n, 2.0f * v3_dot(d, n))); }

/* The camera ray through pixel (x, y) of a width x height frame, jittered in the pixel and on
 * the lens. Row 0 is the top of the image. */
CPN_DEVICE void cpn_camera_ray(const cpn_scene_view* s, cpn_u32 x, cpn_u32 y, cpn_u32 width, cpn_u32 height,
                               cpn_rng* rng, cpn_vec3* origin, cpn_vec3* dir) {
    CPN_GLOBAL const cpn_scene_header* h = s->header;
    const float aspect = (float)width / (float)height;
    const float px = ((float)x + cpn_rng_next(rng)) / (float)width;
    const float py = ((float)y + cpn_rng_next(rng)) / (float)height;
    const float sx = (2.0f * px - 1.0f) * h->tan_half_fov * aspect;
    const float sy = (1.0f - 2.0f * py) * h->tan_half_fov;
    const cpn_vec3 fwd = v3_load(h->cam_forward), right = v3_load(h->cam_right), up = v3_load(h->cam_up);
    const cpn_vec3 pos = v3_load(h->cam_pos);
    const cpn_vec3 d = v3_add(fwd, v3_add(v3_scale(right, sx), v3_scale(up, sy)));
    const float r1 = cpn_rng_next(rng), r2 = cpn_rng_next(rng);
    if (h->lens_radius > 0.0f) {
        const cpn_vec3 focus = v3_add(pos, v3_scale(d, h->focus_distance));
        const float rad = h->lens_radius * cpn_sqrtf(r1);
        const float th = 2.0f * CPN_PI * r2;
        const cpn_vec3 o = v3_add(pos, v3_add(v3_scale(right, rad * cpn_cosf(th)), v3_scale(up, rad * cpn_sinf(th))));
        *origin = o;
        *dir = v3_normalize(v3_sub(focus, o));
    } else {
        *origin = pos;
        *dir = v3_normalize(d);
    }
}

/* Traces one sample; returns its radiance and adds the rays it cast to *rays. */
CPN_DEVICE cpn_vec3 cpn_trace_sample(const cpn_scene_view* s, cpn_u32 x, cpn_u32 y, cpn_u32 width, cpn_u32 height,
                                     cpn_u32 sample, cpn_u32 seed, cpn_u32 max_depth, cpn_u32* rays) {
    cpn_rng rng = cpn_rng_make(seed, y * width + x, sample);
    cpn_vec3 o, d;
    cpn_camera_ray(s, x, y, width, height, &rng, &o, &d);
    cpn_vec3 radiance = v3(0.0f, 0.0f, 0.0f);
    cpn_vec3 throughput = v3(1.0f, 1.0f, 1.0f);
    const cpn_u32 node_count = s->header->node_count;
    const cpn_u32 light_count = s->header->light_count;
    float last_pdf = 0.0f; /* the material's solid-angle density of the ray now traced; 0: specular or camera */
    for (cpn_u32 depth = 0u; depth <= max_depth; ++depth) {
        *rays += 1u;
        cpn_hit hit;
        if (!cpn_intersect_scene(s->nodes, node_count, s->prims, o, d, 0.0f, CPN_INF, &hit)) {
            radiance = v3_add(radiance, v3_mul(throughput, cpn_environment(s, d)));
            break;
        }
        CPN_GLOBAL const cpn_prim* p = &s->prims[hit.prim];
        CPN_GLOBAL const cpn_material* m = &s->materials[p->material];
        if (m->type == CPN_MAT_EMISSIVE) {
            float w = 1.0f;
            if (last_pdf > 0.0f && p->light != CPN_NO_LIGHT) {
                /* this light was also sampled at the previous (diffuse) vertex: MIS weight */
                CPN_GLOBAL const cpn_light* l = &s->lights[p->light];
                const cpn_vec3 hp = v3_add(o, v3_scale(d, hit.t));
                cpn_vec3 ln;
                if (p->type == CPN_PRIM_SPHERE) ln = v3_scale(v3_sub(hp, v3_load(p->v0)), 1.0f / p->e1[0]);
                else ln = v3_load(p->n);
                const float cos_l = cpn_fabsf(v3_dot(ln, d));
                const float pdf_light = cos_l > 0.0f ? l->pmf / l->area * hit.t * hit.t / cos_l : 0.0f;
                w = cpn_mis(last_pdf, pdf_light);
            }
            radiance = v3_add(radiance, v3_scale(v3_mul(throughput, v3_load(m->emission)), w));
            break;
        }
        if (depth == max_depth) break; /* the path is cut: what it would have gathered is lost */
        const cpn_vec3 pos = v3_add(o, v3_scale(d, hit.t));
        cpn_vec3 n = p->type == CPN_PRIM_SPHERE ? v3_scale(v3_sub(pos, v3_load(p->v0)), 1.0f / p->e1[0]) : v3_load(p->n);
        const int front = v3_dot(d, n) < 0.0f;
        const cpn_vec3 nf = front ? n : v3_scale(n, -1.0f); /* faces the incoming ray */
        const cpn_vec3 albedo = v3_load(m->albedo);
        const float scale = cpn_max(1.0f, cpn_max(cpn_fabsf(pos.x), cpn_max(cpn_fabsf(pos.y), cpn_fabsf(pos.z))));
        const float eps = 1e-4f * scale;
        cpn_vec3 nd;
        if (m->type == CPN_MAT_DIFFUSE) {
            if (light_count > 0u) {
                /* next-event estimation: one point on one light, and a shadow ray to it */
                const float ul = cpn_rng_next(&rng), u1 = cpn_rng_next(&rng), u2 = cpn_rng_next(&rng);
                CPN_GLOBAL const cpn_light* l = &s->lights[cpn_pick_light(s->lights, light_count, ul)];
                cpn_vec3 ln;
                const cpn_vec3 q = cpn_sample_surface(&s->prims[l->prim], u1, u2, &ln);
                const cpn_vec3 so = v3_add(pos, v3_scale(nf, eps));
                cpn_vec3 wi = v3_sub(q, so);
                const float dist2 = v3_dot(wi, wi);
                const float dist = cpn_sqrtf(dist2);
                wi = v3_scale(wi, 1.0f / dist);
                const float cos_s = v3_dot(nf, wi);
                const float cos_l = cpn_fabsf(v3_dot(ln, wi));
                if (cos_s > 0.0f && cos_l > 1e-6f && dist > eps) {
                    *rays += 1u;
                    if (!cpn_occluded_scene(s->nodes, node_count, s->prims, so, wi, 0.0f, dist * (1.0f - 1e-4f))) {
                        const float pdf_light = l->pmf / l->area * dist2 / cos_l;
                        const float pdf_bsdf = cos_s * (1.0f / CPN_PI);
                        const cpn_vec3 le = v3_load(s->materials[s->prims[l->prim].material].emission);
                        /* f = albedo / pi; contribution f * Le * cos_s / pdf_light, weighted */
                        const float k = cos_s * (1.0f / CPN_PI) / pdf_light * cpn_mis(pdf_light, pdf_bsdf);
                        radiance = v3_add(radiance, v3_scale(v3_mul(v3_mul(throughput, albedo), le), k));
                    }
                }
            }
            const float r1 = cpn_rng_next(&rng), r2 = cpn_rng_next(&rng);
            nd = cpn_cosine_direction(nf, r1, r2);
            last_pdf = light_count > 0u ? cpn_max(0.0f, v3_dot(nd, nf)) * (1.0f / CPN_PI) : 0.0f;
        } else if (m->type == CPN_MAT_METAL) {
            const cpn_vec3 fuzz = cpn_in_unit_sphere(&rng);
            nd = v3_normalize(v3_add(cpn_reflect(d, nf), v3_scale(fuzz, m->roughness)));
            if (v3_dot(nd, nf) <= 0.0f) break; /* scattered below the surface: absorbed */
            last_pdf = 0.0f;
        } else {
            const float eta = front ? 1.0f / m->ior : m->ior;
            const float cos_i = cpn_min(1.0f, -v3_dot(d, nf));
            const float sin2_t = eta * eta * (1.0f - cos_i * cos_i);
            float r0 = (1.0f - eta) / (1.0f + eta);
            r0 = r0 * r0;
            const float c5 = 1.0f - cos_i;
            const float fresnel = r0 + (1.0f - r0) * c5 * c5 * c5 * c5 * c5;
            const float u = cpn_rng_next(&rng);
            if (sin2_t > 1.0f || u < fresnel) {
                nd = cpn_reflect(d, nf);
            } else {
                const float cos_t = cpn_sqrtf(1.0f - sin2_t);
                nd = v3_normalize(v3_add(v3_scale(d, eta), v3_scale(nf, eta * cos_i - cos_t)));
            }
            last_pdf = 0.0f;
        }
        throughput = v3_mul(throughput, albedo);
        /* Russian roulette from the fourth bounce on; a white path is never cut */
        if (depth >= 3u) {
            const float q = cpn_min(1.0f, cpn_max(0.05f, v3_max_component(throughput)));
            if (q < 1.0f) {
                if (cpn_rng_next(&rng) >= q) break;
                throughput = v3_scale(throughput, 1.0f / q);
            }
        }
        /* leave the surface on the side the new ray goes, by an offset relative to the scale */
        const float side = v3_dot(nd, nf) >= 0.0f ? 1.0f : -1.0f;
        o = v3_add(pos, v3_scale(nf, side * eps));
        d = nd;
    }
    if (!(cpn_isfinite(radiance.x) && cpn_isfinite(radiance.y) && cpn_isfinite(radiance.z))) return v3(0.0f, 0.0f, 0.0f);
    return radiance;
}

/* One tile pixel of a pass: the sum over its samples, written as 4 floats (r, g, b, rays). */
CPN_DEVICE void cpn_render_pixel(const cpn_scene_view* s, const cpn_render_pass* pass, cpn_u32 x, cpn_u32 y,
                                 CPN_GLOBAL float* out4) {
    cpn_vec3 sum = v3(0.0f, 0.0f, 0.0f);
    cpn_u32 rays = 0u;
    for (cpn_u32 i = 0u; i < pass->sample_count; ++i) {
        const cpn_vec3 l = cpn_trace_sample(s, x, y, pass->width, pass->height, pass->sample_begin + i, pass->seed,
                                            pass->max_depth, &rays);
        sum = v3_add(sum, l);
    }
    out4[0] = sum.x;
    out4[1] = sum.y;
    out4[2] = sum.z;
    out4[3] = (float)rays;
}

#endif /* CPN_RENDER_PATH_H */
