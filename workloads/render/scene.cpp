// scene.cpp: reads the scene format of docs/render.md with yaml-cpp (JSON is YAML's flow
// subset, so one parser serves both) and Wavefront OBJ meshes with tinyobjloader.
#include "scene.hpp"

#include <sys/stat.h>

#include <yaml-cpp/yaml.h>
#include <tiny_obj_loader.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "image.hpp"

namespace cpn::render {

namespace {

namespace fs = std::filesystem;

/* An error that carries where it happened, thrown inside the parser and turned into a Status
 * at its edge (the parser is a tree walk; unwinding keeps every check one line). */
struct SceneError {
    std::string message;
};

class Parser {
public:
    Parser(std::string source, const SceneLimits& limits) : source_(std::move(source)), limits_(limits) {}

    Scene parse(const YAML::Node& root) {
        if (!root.IsMap()) fail(root, "the scene", "must be a mapping with camera, materials and objects");
        static const std::set<std::string> known{"camera", "environment", "materials", "objects", "render"};
        for (const auto& kv : root) {
            const std::string key = kv.first.as<std::string>();
            if (!known.count(key))
                fail(kv.first, "the scene", "unknown key '" + key + "' (known: camera, environment, materials, objects, render)");
        }
        if (root["render"]) parse_settings(root["render"]);
        if (!root["camera"]) fail(root, "the scene", "has no camera");
        parse_camera(root["camera"]);
        if (root["environment"]) parse_environment(root["environment"]);
        if (!root["materials"] || !root["materials"].IsMap() || root["materials"].size() == 0)
            fail(root["materials"] ? root["materials"] : root, "materials", "must be a mapping of at least one named material");
        for (const auto& kv : root["materials"]) parse_material(kv.first.as<std::string>(), kv.second);
        if (!root["objects"] || !root["objects"].IsSequence())
            fail(root["objects"] ? root["objects"] : root, "objects", "must be a list of objects");
        if (root["objects"].size() > limits_.max_objects)
            fail(root["objects"], "objects", "lists " + std::to_string(root["objects"].size()) + " objects, more than the limit of " +
                                                 std::to_string(limits_.max_objects));
        size_t i = 0;
        for (const auto& o : root["objects"]) parse_object(o, "objects[" + std::to_string(i++) + "]");
        return std::move(scene_);
    }

private:
    [[noreturn]] void fail(const YAML::Node& at, const std::string& what, const std::string& msg) const {
        std::string where = source_;
        const YAML::Mark m = at.Mark();
        if (m.line >= 0) where += ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
        throw SceneError{where + ": " + what + ": " + msg};
    }

    static bool is_number(const YAML::Node& n) {
        if (!n.IsScalar()) return false;
        try {
            (void)n.as<double>();
            return true;
        } catch (const YAML::Exception&) {
            return false;
        }
    }

    float number(const YAML::Node& n, const std::string& what, double lo, double hi) const {
        if (!is_number(n)) fail(n, what, "must be a number");
        const double v = n.as<double>();
        if (!std::isfinite(v)) fail(n, what, "must be finite (got " + n.Scalar() + ")");
        if (v < lo || v > hi) {
            std::ostringstream os;
            os << "must be from " << lo << " to " << hi << " (got " << n.Scalar() << ")";
            fail(n, what, os.str());
        }
        return static_cast<float>(v);
    }

    uint32_t integer(const YAML::Node& n, const std::string& what, uint64_t lo, uint64_t hi) const {
        if (!n.IsScalar()) fail(n, what, "must be an integer");
        long long v = 0;
        try {
            v = n.as<long long>();
        } catch (const YAML::Exception&) {
            fail(n, what, "must be an integer (got " + n.Scalar() + ")");
        }
        if (v < 0 || static_cast<uint64_t>(v) < lo || static_cast<uint64_t>(v) > hi)
            fail(n, what, "must be from " + std::to_string(lo) + " to " + std::to_string(hi) + " (got " + n.Scalar() + ")");
        return static_cast<uint32_t>(v);
    }

    Vec3 vec3(const YAML::Node& n, const std::string& what, double lo = -1e7, double hi = 1e7) const {
        if (!n.IsSequence() || n.size() != 3) fail(n, what, "must be a list of three numbers");
        return {number(n[0], what + "[0]", lo, hi), number(n[1], what + "[1]", lo, hi), number(n[2], what + "[2]", lo, hi)};
    }

    void check_keys(const YAML::Node& n, const std::string& what, const std::set<std::string>& known) const {
        if (!n.IsMap()) fail(n, what, "must be a mapping");
        for (const auto& kv : n) {
            const std::string key = kv.first.as<std::string>();
            if (!known.count(key)) {
                std::string list;
                for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
                fail(kv.first, what, "unknown key '" + key + "' (known: " + list + ")");
            }
        }
    }

    void parse_settings(const YAML::Node& n) {
        check_keys(n, "render", {"width", "height", "spp", "max_depth", "seed"});
        RenderSettings& s = scene_.settings;
        if (n["width"]) s.width = integer(n["width"], "render.width", 1, 16384);
        if (n["height"]) s.height = integer(n["height"], "render.height", 1, 16384);
        if (n["spp"]) s.spp = integer(n["spp"], "render.spp", 1, 1u << 20);
        if (n["max_depth"]) s.max_depth = integer(n["max_depth"], "render.max_depth", 0, 256);
        if (n["seed"]) s.seed = integer(n["seed"], "render.seed", 0, UINT32_MAX);
    }

    void parse_camera(const YAML::Node& n) {
        check_keys(n, "camera", {"position", "look_at", "up", "fov", "aperture", "focus_distance"});
        Camera& c = scene_.camera;
        if (!n["position"] || !n["look_at"]) fail(n, "camera", "needs position and look_at");
        c.position = vec3(n["position"], "camera.position");
        c.look_at = vec3(n["look_at"], "camera.look_at");
        if (n["up"]) c.up = vec3(n["up"], "camera.up");
        if (n["fov"]) c.fov_deg = number(n["fov"], "camera.fov", 1, 179);
        if (n["aperture"]) c.aperture = number(n["aperture"], "camera.aperture", 0, 1e6);
        if (n["focus_distance"]) c.focus_distance = number(n["focus_distance"], "camera.focus_distance", 1e-6, 1e7);
        const Vec3 f{c.look_at.x - c.position.x, c.look_at.y - c.position.y, c.look_at.z - c.position.z};
        const double fl = std::sqrt(double{f.x} * f.x + double{f.y} * f.y + double{f.z} * f.z);
        if (fl < 1e-9) fail(n, "camera", "position and look_at are the same point");
        const Vec3 u = c.up;
        const double cx = double{f.y} * u.z - double{f.z} * u.y, cy = double{f.z} * u.x - double{f.x} * u.z,
                     cz = double{f.x} * u.y - double{f.y} * u.x;
        if (std::sqrt(cx * cx + cy * cy + cz * cz) < 1e-9 * fl) fail(n, "camera.up", "is parallel to the view direction (or zero)");
    }

    void parse_environment(const YAML::Node& n) {
        check_keys(n, "environment", {"color", "intensity", "image", "rotation"});
        Environment& e = scene_.environment;
        if (n["color"]) e.color = vec3(n["color"], "environment.color", 0, 1e6);
        if (n["intensity"]) e.intensity = number(n["intensity"], "environment.intensity", 0, 1e6);
        if (n["rotation"]) e.rotation_deg = number(n["rotation"], "environment.rotation", -360, 360);
        if (n["image"]) {
            if (!n["image"].IsScalar()) fail(n["image"], "environment.image", "must be a file name (.png or .pfm)");
            const std::string path = checked_file(n["image"], "environment.image");
            const std::string bytes = read_file(n["image"], "environment.image", path);
            const bool pfm = path.size() > 4 && path.compare(path.size() - 4, 4, ".pfm") == 0;
            Result<Image> img = pfm ? decode_pfm(bytes, path, limits_.max_image_pixels)
                                    : decode_png(bytes, path, limits_.max_image_pixels);
            if (!img.ok()) fail(n["image"], "environment.image", img.status().message());
            e.width = img->width;
            e.height = img->height;
            e.image = std::move(img->rgb);
            if (!n["color"]) e.color = {1, 1, 1};
        }
    }

    void parse_material(const std::string& name, const YAML::Node& n) {
        const std::string what = "materials." + name;
        check_keys(n, what, {"type", "albedo", "roughness", "ior", "emission"});
        if (material_index_.count(name)) fail(n, what, "is defined twice");
        if (!n["type"] || !n["type"].IsScalar()) fail(n, what, "needs a type (diffuse, metal, dielectric, emissive)");
        const std::string type = n["type"].Scalar();
        Material m;
        m.name = name;
        m.m.albedo[0] = m.m.albedo[1] = m.m.albedo[2] = type == "dielectric" ? 1.0f : 0.8f;
        m.m.ior = 1.5f;
        if (type == "diffuse") m.m.type = CPN_MAT_DIFFUSE;
        else if (type == "metal") m.m.type = CPN_MAT_METAL;
        else if (type == "dielectric") m.m.type = CPN_MAT_DIELECTRIC;
        else if (type == "emissive") m.m.type = CPN_MAT_EMISSIVE;
        else fail(n["type"], what + ".type", "unknown material type '" + type + "' (known: diffuse, metal, dielectric, emissive)");
        if (n["albedo"]) {
            // albedo above 1 would create energy: refused
            const Vec3 a = vec3(n["albedo"], what + ".albedo", 0, 1);
            m.m.albedo[0] = a.x;
            m.m.albedo[1] = a.y;
            m.m.albedo[2] = a.z;
        }
        if (n["roughness"]) {
            if (m.m.type != CPN_MAT_METAL) fail(n["roughness"], what + ".roughness", "applies to metal only");
            m.m.roughness = number(n["roughness"], what + ".roughness", 0, 1);
        }
        if (n["ior"]) {
            if (m.m.type != CPN_MAT_DIELECTRIC) fail(n["ior"], what + ".ior", "applies to dielectric only");
            m.m.ior = number(n["ior"], what + ".ior", 1, 4);
        }
        if (n["emission"]) {
            if (m.m.type != CPN_MAT_EMISSIVE) fail(n["emission"], what + ".emission", "applies to emissive only");
            const Vec3 e = vec3(n["emission"], what + ".emission", 0, 1e6);
            m.m.emission[0] = e.x;
            m.m.emission[1] = e.y;
            m.m.emission[2] = e.z;
        } else if (m.m.type == CPN_MAT_EMISSIVE) {
            fail(n, what, "an emissive material needs emission: [r, g, b]");
        }
        material_index_[name] = static_cast<uint32_t>(scene_.materials.size());
        scene_.materials.push_back(m);
    }

    uint32_t material_of(const YAML::Node& o, const std::string& what) const {
        if (!o["material"] || !o["material"].IsScalar()) fail(o, what, "needs a material (a name from materials)");
        auto it = material_index_.find(o["material"].Scalar());
        if (it == material_index_.end()) {
            std::string list;
            for (const auto& [k, v] : material_index_) list += (list.empty() ? "" : ", ") + k;
            fail(o["material"], what + ".material", "unknown material '" + o["material"].Scalar() + "' (defined: " + list + ")");
        }
        return it->second;
    }

    void add_triangle(const Vec3& a, const Vec3& b, const Vec3& c, uint32_t material) {
        cpn_prim p{};
        p.type = CPN_PRIM_TRIANGLE;
        p.material = material;
        p.v0[0] = a.x, p.v0[1] = a.y, p.v0[2] = a.z;
        p.e1[0] = b.x - a.x, p.e1[1] = b.y - a.y, p.e1[2] = b.z - a.z;
        p.e2[0] = c.x - a.x, p.e2[1] = c.y - a.y, p.e2[2] = c.z - a.z;
        const double nx = double{p.e1[1]} * p.e2[2] - double{p.e1[2]} * p.e2[1];
        const double ny = double{p.e1[2]} * p.e2[0] - double{p.e1[0]} * p.e2[2];
        const double nz = double{p.e1[0]} * p.e2[1] - double{p.e1[1]} * p.e2[0];
        const double len = std::sqrt(nx * nx + ny * ny + nz * nz);
        if (!(len > 1e-30)) {  // degenerate (zero area): it can never be hit
            ++degenerate_;
            return;
        }
        p.n[0] = static_cast<float>(nx / len), p.n[1] = static_cast<float>(ny / len), p.n[2] = static_cast<float>(nz / len);
        scene_.prims.push_back(p);
        ++scene_.triangles;
    }

    void count_triangles(const YAML::Node& at, const std::string& what, uint64_t more) {
        if (scene_.triangles + more > limits_.max_triangles)
            fail(at, what, "brings the scene to " + std::to_string(scene_.triangles + more) +
                               " triangles, more than the limit of " + std::to_string(limits_.max_triangles));
    }

    void parse_object(const YAML::Node& o, const std::string& idx) {
        if (!o.IsMap() || !o["type"] || !o["type"].IsScalar()) fail(o, idx, "must be a mapping with a type (sphere, quad, triangle, mesh)");
        const std::string type = o["type"].Scalar();
        const std::string what = idx + " (" + type + ")";
        if (type == "sphere") {
            check_keys(o, what, {"type", "center", "radius", "material"});
            if (!o["center"] || !o["radius"]) fail(o, what, "needs center and radius");
            const Vec3 c = vec3(o["center"], what + ".center");
            const float r = number(o["radius"], what + ".radius", 1e-6, 1e7);
            cpn_prim p{};
            p.type = CPN_PRIM_SPHERE;
            p.material = material_of(o, what);
            p.v0[0] = c.x, p.v0[1] = c.y, p.v0[2] = c.z;
            p.e1[0] = r;
            scene_.prims.push_back(p);
            ++scene_.spheres;
        } else if (type == "quad") {
            check_keys(o, what, {"type", "corner", "u", "v", "material"});
            if (!o["corner"] || !o["u"] || !o["v"]) fail(o, what, "needs corner, u and v");
            const Vec3 c = vec3(o["corner"], what + ".corner"), u = vec3(o["u"], what + ".u"), v = vec3(o["v"], what + ".v");
            const uint32_t m = material_of(o, what);
            count_triangles(o, what, 2);
            const Vec3 cu{c.x + u.x, c.y + u.y, c.z + u.z}, cv{c.x + v.x, c.y + v.y, c.z + v.z};
            const Vec3 cuv{c.x + u.x + v.x, c.y + u.y + v.y, c.z + u.z + v.z};
            const uint64_t before = scene_.triangles;
            add_triangle(c, cu, cuv, m);
            add_triangle(c, cuv, cv, m);
            if (scene_.triangles == before) fail(o, what, "u and v span no area");
        } else if (type == "triangle") {
            check_keys(o, what, {"type", "vertices", "material"});
            const YAML::Node v = o["vertices"];
            if (!v || !v.IsSequence() || v.size() != 3) fail(o, what, "needs vertices: a list of three points");
            const uint32_t m = material_of(o, what);
            count_triangles(o, what, 1);
            add_triangle(vec3(v[0], what + ".vertices[0]"), vec3(v[1], what + ".vertices[1]"), vec3(v[2], what + ".vertices[2]"), m);
        } else if (type == "mesh") {
            parse_mesh(o, what);
        } else {
            fail(o["type"], idx + ".type", "unknown object type '" + type + "' (known: sphere, quad, triangle, mesh)");
        }
    }

    /* A scale, rotations about x, y, z (degrees, in that order) and a translation. */
    struct Transform {
        double m[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
        double t[3] = {0, 0, 0};
        Vec3 apply(double x, double y, double z) const {
            return {static_cast<float>(m[0][0] * x + m[0][1] * y + m[0][2] * z + t[0]),
                    static_cast<float>(m[1][0] * x + m[1][1] * y + m[1][2] * z + t[1]),
                    static_cast<float>(m[2][0] * x + m[2][1] * y + m[2][2] * z + t[2])};
        }
    };

    Transform transform(const YAML::Node& n, const std::string& what) const {
        Transform tr;
        if (!n) return tr;
        check_keys(n, what, {"translate", "rotate", "scale"});
        double s[3] = {1, 1, 1};
        if (n["scale"]) {
            if (n["scale"].IsSequence()) {
                const Vec3 v = vec3(n["scale"], what + ".scale", 1e-9, 1e9);
                s[0] = v.x, s[1] = v.y, s[2] = v.z;
            } else {
                s[0] = s[1] = s[2] = number(n["scale"], what + ".scale", 1e-9, 1e9);
            }
        }
        double r[3] = {0, 0, 0};
        if (n["rotate"]) {
            const Vec3 v = vec3(n["rotate"], what + ".rotate", -360, 360);
            r[0] = v.x * M_PI / 180, r[1] = v.y * M_PI / 180, r[2] = v.z * M_PI / 180;
        }
        auto mul = [](const double a[3][3], const double b[3][3], double out[3][3]) {
            for (int i = 0; i < 3; ++i)
                for (int j = 0; j < 3; ++j) out[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
        };
        const double rx[3][3] = {{1, 0, 0}, {0, std::cos(r[0]), -std::sin(r[0])}, {0, std::sin(r[0]), std::cos(r[0])}};
        const double ry[3][3] = {{std::cos(r[1]), 0, std::sin(r[1])}, {0, 1, 0}, {-std::sin(r[1]), 0, std::cos(r[1])}};
        const double rz[3][3] = {{std::cos(r[2]), -std::sin(r[2]), 0}, {std::sin(r[2]), std::cos(r[2]), 0}, {0, 0, 1}};
        const double sm[3][3] = {{s[0], 0, 0}, {0, s[1], 0}, {0, 0, s[2]}};
        double a[3][3], b[3][3];
        mul(rx, sm, a);   // scale first, then x
        mul(ry, a, b);    // then y
        mul(rz, b, tr.m); // then z
        if (n["translate"]) {
            const Vec3 v = vec3(n["translate"], what + ".translate");
            tr.t[0] = v.x, tr.t[1] = v.y, tr.t[2] = v.z;
        }
        return tr;
    }

    std::string checked_file(const YAML::Node& at, const std::string& what) const {
        Result<std::string> p = resolve_scene_path(at.Scalar(), limits_);
        if (!p.ok()) fail(at, what, p.status().message());
        return p.value();
    }

    std::string read_file(const YAML::Node& at, const std::string& what, const std::string& path) const {
        struct stat st{};
        if (::stat(path.c_str(), &st) != 0) fail(at, what, "cannot stat '" + path + "': " + std::strerror(errno));
        if (static_cast<uint64_t>(st.st_size) > limits_.max_file_bytes)
            fail(at, what, "'" + path + "' is " + std::to_string(st.st_size) + " bytes, more than the limit of " +
                               std::to_string(limits_.max_file_bytes));
        std::ifstream in(path, std::ios::binary);
        if (!in) fail(at, what, "cannot open '" + path + "': " + std::strerror(errno));
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        return bytes;
    }

    /* One pass over the OBJ text before tinyobjloader sees it: every vertex finite, and the
     * triangle count within the limit (so a huge mesh is refused before it is allocated). */
    void prescan_obj(const YAML::Node& at, const std::string& what, const std::string& path, const std::string& text) {
        uint64_t tris = 0;
        size_t line_no = 0, pos = 0;
        while (pos < text.size()) {
            size_t end = text.find('\n', pos);
            if (end == std::string::npos) end = text.size();
            ++line_no;
            const char* p = text.data() + pos;
            const char* e = text.data() + end;
            while (p < e && (*p == ' ' || *p == '\t')) ++p;
            if (e - p >= 2 && p[0] == 'v' && (p[1] == ' ' || p[1] == '\t')) {
                std::string line(p + 2, e);
                std::istringstream is(line);
                std::string tok;
                for (int k = 0; k < 3; ++k) {
                    if (!(is >> tok)) fail(at, what, path + ":" + std::to_string(line_no) + ": a vertex needs three coordinates");
                    char* stop = nullptr;
                    const double v = std::strtod(tok.c_str(), &stop);
                    if (*stop != '\0' || !std::isfinite(v))
                        fail(at, what, path + ":" + std::to_string(line_no) + ": vertex coordinate '" + tok + "' is not a finite number");
                }
            } else if (e - p >= 2 && p[0] == 'f' && (p[1] == ' ' || p[1] == '\t')) {
                std::istringstream is(std::string(p + 2, e));
                std::string tok;
                uint64_t n = 0;
                while (is >> tok) ++n;
                if (n < 3) fail(at, what, path + ":" + std::to_string(line_no) + ": a face needs at least three vertices");
                tris += n - 2;
                if (scene_.triangles + tris > limits_.max_triangles)
                    fail(at, what, path + " holds more than " + std::to_string(limits_.max_triangles - scene_.triangles) +
                                       " triangles: the scene's limit is " + std::to_string(limits_.max_triangles));
            }
            pos = end + 1;
        }
    }

    void parse_mesh(const YAML::Node& o, const std::string& what) {
        check_keys(o, what, {"type", "file", "material", "transform", "triangles"});
        if (!o["file"] || !o["file"].IsScalar()) fail(o, what, "needs file: a Wavefront OBJ file");
        const uint32_t m = material_of(o, what);
        if (o["triangles"]) {  // a declared size is checked before anything is read
            if (!o["triangles"].IsScalar()) fail(o["triangles"], what + ".triangles", "must be a number");
            const double declared = number(o["triangles"], what + ".triangles", 1, 1e18);
            if (scene_.triangles + declared > static_cast<double>(limits_.max_triangles))
                fail(o["triangles"], what + ".triangles",
                     "declares " + o["triangles"].Scalar() + " triangles, more than the scene's limit of " +
                         std::to_string(limits_.max_triangles));
        }
        const Transform tr = transform(o["transform"], what + ".transform");
        const std::string path = checked_file(o["file"], what + ".file");
        const std::string text = read_file(o["file"], what + ".file", path);
        prescan_obj(o["file"], what + ".file", path, text);
        tinyobj::ObjReaderConfig cfg;
        cfg.triangulate = true;
        cfg.vertex_color = false;
        tinyobj::ObjReader reader;
        // The text is parsed from memory with no material library: an OBJ cannot make the agent
        // read any other file.
        if (!reader.ParseFromString(text, std::string(), cfg))
            fail(o["file"], what + ".file", path + ": " + (reader.Error().empty() ? std::string("not a readable OBJ file") : reader.Error()));
        const tinyobj::attrib_t& attrib = reader.GetAttrib();
        const size_t nverts = attrib.vertices.size() / 3;
        uint64_t added = 0;
        for (const tinyobj::shape_t& shape : reader.GetShapes()) {
            const auto& idx = shape.mesh.indices;
            size_t off = 0;
            for (const unsigned char fv : shape.mesh.num_face_vertices) {
                if (fv != 3 || off + 3 > idx.size()) fail(o["file"], what + ".file", path + ": a face could not be triangulated");
                Vec3 v[3];
                for (int k = 0; k < 3; ++k) {
                    const int vi = idx[off + k].vertex_index;
                    if (vi < 0 || static_cast<size_t>(vi) >= nverts)
                        fail(o["file"], what + ".file", path + ": a face refers to vertex " + std::to_string(vi + 1) +
                                                            " of " + std::to_string(nverts));
                    v[k] = tr.apply(attrib.vertices[3 * vi], attrib.vertices[3 * vi + 1], attrib.vertices[3 * vi + 2]);
                }
                count_triangles(o["file"], what + ".file", 1);
                add_triangle(v[0], v[1], v[2], m);
                ++added;
                off += 3;
            }
        }
        if (added == 0) fail(o["file"], what + ".file", path + " holds no faces");
    }

    std::string source_;
    const SceneLimits& limits_;
    Scene scene_;
    std::map<std::string, uint32_t> material_index_;
    uint64_t degenerate_ = 0;
};

bool inside(const fs::path& p, const fs::path& dir) {
    auto pi = p.begin();
    for (auto di = dir.begin(); di != dir.end(); ++di, ++pi) {
        if (di->empty()) continue;  // a trailing separator
        if (pi == p.end() || *pi != *di) return false;
    }
    return true;
}

}  // namespace

Result<std::string> resolve_scene_path(const std::string& path, const SceneLimits& limits) {
    if (path.empty()) return Status(Code::invalid_argument, "an empty file name");
    if (path.find('\0') != std::string::npos) return Status(Code::invalid_argument, "a file name with a NUL byte");
    fs::path p(path);
    if (p.is_relative()) {
        if (limits.base_dir.empty())
            return Status(Code::permission_denied, "'" + path + "' is relative, and this scene has no directory to resolve it against (use an absolute path inside an allowed directory)");
        p = fs::path(limits.base_dir) / p;
    }
    std::error_code ec;
    const fs::path canon = fs::canonical(p, ec);
    if (ec) return Status(Code::not_found, "'" + p.string() + "': " + ec.message());
    bool ok = false;
    for (const std::string& d : limits.allowed_dirs) {
        const fs::path dc = fs::weakly_canonical(fs::path(d), ec);
        if (!ec && inside(canon, dc)) ok = true;
    }
    if (!ok) {
        std::string list;
        for (const std::string& d : limits.allowed_dirs) list += (list.empty() ? "" : ", ") + d;
        return Status(Code::permission_denied, "'" + canon.string() + "' is outside the allowed directories (" +
                                                   (list.empty() ? std::string("none") : list) + ")");
    }
    if (!fs::is_regular_file(canon, ec)) return Status(Code::invalid_argument, "'" + canon.string() + "' is not a regular file");
    return canon.string();
}

Result<Scene> parse_scene(const std::string& text, const std::string& source, const SceneLimits& limits) {
    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::ParserException& e) {
        return Status(Code::invalid_argument, source + ":" + std::to_string(e.mark.line + 1) + ":" +
                                                  std::to_string(e.mark.column + 1) + ": not valid YAML or JSON: " + e.msg);
    }
    try {
        Parser p(source, limits);
        return p.parse(root);
    } catch (const SceneError& e) {
        return Status(Code::invalid_argument, e.message);
    } catch (const YAML::Exception& e) {
        return Status(Code::invalid_argument, source + ": " + e.what());
    } catch (const std::bad_alloc&) {
        return Status(Code::out_of_memory, source + ": out of memory while reading the scene");
    }
}

Result<Scene> load_scene_file(const std::string& path, SceneLimits limits) {
    std::error_code ec;
    const fs::path canon = fs::canonical(path, ec);
    if (ec) return Status(Code::not_found, "scene '" + path + "': " + ec.message());
    if (!fs::is_regular_file(canon, ec)) return Status(Code::invalid_argument, "scene '" + path + "' is not a regular file");
    const uint64_t size = fs::file_size(canon, ec);
    if (!ec && size > (64u << 20)) return Status(Code::invalid_argument, "scene '" + path + "' is larger than 64 MiB");
    std::ifstream in(canon, std::ios::binary);
    if (!in) return Status(Code::not_found, "scene '" + path + "': cannot open: " + std::strerror(errno));
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (limits.base_dir.empty()) limits.base_dir = canon.parent_path().string();
    return parse_scene(text, path, limits);
}

}  // namespace cpn::render
